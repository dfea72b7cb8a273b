import type { Sql } from "@tally/platform";
import type { DeadLetterStore } from "../domain/ports";
import type { DeadLetter } from "../domain/types";

/** Dead letters on `dead_letters`: the raw message (subject, payload, headers, stream position) and why it failed. */
export class SqlDeadLetterStore implements DeadLetterStore {
  constructor(private readonly sql: Sql) {}

  /** The payload travels as a bind parameter, never inlined into the statement text. */
  async add(letter: DeadLetter): Promise<void> {
    await this.sql.bound(
      {
        name: "dead_letters_add",
        text: `INSERT INTO dead_letters (stream, stream_sequence, subject, payload, headers, error, delivery_count)
         VALUES ($1, $2::bigint, $3, $4, $5::jsonb, $6, $7::integer)`,
      },
      [
        letter.stream,
        letter.streamSequence,
        withoutNul(letter.subject),
        letter.payload,
        // jsonb cannot hold \u0000 either, escaped or not.
        withoutNul(JSON.stringify(letter.headers)),
        withoutNul(letter.error),
        letter.deliveryCount,
      ],
    );
  }
}

/** A dead letter is kept whatever it holds: NUL, which text cannot store, becomes U+FFFD. */
const withoutNul = (value: string) => value.replace(/\u0000|\\u0000/g, "\uFFFD");

import type { Sql } from "@tally/platform";
import type { InboxStore } from "../domain/ports";

/** The inbox on `processed_events`: one row per event id, primary key (INV-5). */
export class SqlInboxStore implements InboxStore {
  constructor(private readonly sql: Sql) {}

  async claimMany(events: readonly { eventId: string; subject: string }[]): Promise<Set<string>> {
    if (events.length === 0) return new Set();
    // DO NOTHING also skips a second copy of an id within this statement; ids in order (INV-9).
    const rows = await this.sql.bound<{ event_id: string }>(CLAIM_MANY, [events.map((e) => e.eventId), events.map((e) => e.subject)]);
    return new Set(rows.map((row) => row.event_id));
  }
}

const CLAIM_MANY = {
  name: "usage_inbox_claim_many",
  text: `INSERT INTO processed_events (event_id, subject)
         SELECT * FROM unnest($1::uuid[], $2::text[]) ORDER BY 1
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id`,
};

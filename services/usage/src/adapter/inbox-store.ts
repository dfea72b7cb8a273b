import type { Sql } from "@tally/platform";
import type { InboxStore } from "../domain/ports";

/** The inbox on `processed_events`: one row per event id, primary key (INV-5). */
export class SqlInboxStore implements InboxStore {
  constructor(private readonly sql: Sql) {}

  async claim(eventId: string, subject: string): Promise<boolean> {
    // Concurrent inserts of one id wait on the primary key until the first commits: exactly one wins.
    const rows = await this.sql.query<{ event_id: string }>(
      "INSERT INTO processed_events (event_id, subject) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
      [eventId, subject],
    );
    return rows.length === 1;
  }
}

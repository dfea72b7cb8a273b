import { createUnitOfWork, SqlIdempotencyStore, SqlOutboxStore, type Orm, type Sql } from "@tally/platform";
import type { GenerationsUnitOfWork, InboxStore } from "../domain/ports";
import { SqlGenerationStore } from "./generation-store";

/** The inbox on `processed_events`: one row per event id, primary key (INV-5). */
export class SqlInboxStore implements InboxStore {
  constructor(private readonly sql: Sql) {}

  async claim(eventId: string, subject: string): Promise<boolean> {
    // Concurrent inserts of one id wait on the primary key until the first commits: exactly one wins.
    const rows = await this.sql.query<{ event_id: string }>(
      "INSERT INTO processed_events (event_id, subject) VALUES (?::uuid, ?) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
      [eventId, subject],
    );
    return rows.length === 1;
  }
}

/** The generations stores over `orm`: each unit of work on its own EntityManager fork. */
export const createGenerationsUnitOfWork = (orm: Orm): GenerationsUnitOfWork =>
  createUnitOfWork(orm, (sql) => ({
    generations: new SqlGenerationStore(sql),
    outbox: new SqlOutboxStore(sql),
    inbox: new SqlInboxStore(sql),
    idempotency: new SqlIdempotencyStore(sql),
  }));

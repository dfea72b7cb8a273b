import { events } from "@tally/contracts";
import type { Sql } from "@tally/platform";
import type { ThresholdStore } from "../domain/ports";
import type { ThresholdCrossing } from "../domain/types";

/** The NATS subject of UsageThresholdCrossed events under `subjectPrefix`. */
export const thresholdCrossedSubject = (subjectPrefix: string): string => `${subjectPrefix}.usage.threshold_crossed`;

/** Crossings on `threshold_crossings`, their events (events.proto UsageThresholdCrossed) on `outbox`. */
export class SqlThresholdStore implements ThresholdStore {
  constructor(
    private readonly sql: Sql,
    /** The full NATS subject the events go on. */
    private readonly subject: string,
  ) {}

  async record(c: ThresholdCrossing): Promise<boolean> {
    const message: events.UsageThresholdCrossed = {
      eventId: c.eventId,
      occurredAt: c.occurredAt,
      subjectId: c.subjectId,
      subjectKind: c.subjectKind,
      plan: c.plan,
      limitName: c.limitName,
      thresholdPerMille: c.thresholdPerMille,
      limit: c.limit,
      used: c.used,
      windowStart: c.windowStart,
    };
    const payload = Buffer.from(events.UsageThresholdCrossed.encode(message).finish());
    // One statement: the unique crossing row gates the outbox row, so a crossing is announced once.
    // The payload travels as a bind parameter, never inlined into the statement text.
    const rows = await this.sql.bound<{ event_id: string }>(
      {
        name: "threshold_crossing_announce",
        text: `WITH crossing AS (
         INSERT INTO threshold_crossings (subject_id, limit_name, threshold_per_mille, window_start, event_id)
         VALUES ($1, $2, $3::integer, $4::timestamptz, $5)
         ON CONFLICT (subject_id, limit_name, threshold_per_mille, window_start) DO NOTHING
         RETURNING event_id)
       INSERT INTO outbox (event_id, subject, payload) SELECT event_id, $6, $7::bytea FROM crossing RETURNING event_id`,
      },
      [c.subjectId, c.limitName, c.thresholdPerMille, c.windowStart, c.eventId, this.subject, payload],
    );
    return rows.length === 1;
  }
}

import assert from "node:assert/strict";
import { optionalDate, toBigInt, type Sql } from "@tally/platform";
import type { ReservationStore } from "../domain/ports";
import type { Reservation, ReservationStatus, SubjectKind } from "../domain/types";

/** Quota reservations on `quota_reservations`, keyed by generation id; `active` ends exactly once. */
export class SqlReservationStore implements ReservationStore {
  constructor(private readonly sql: Sql) {}

  async find(generationId: string): Promise<Reservation | null> {
    const row = await this.sql.one<ReservationRow>(`SELECT ${RESERVATION_COLUMNS} FROM quota_reservations WHERE generation_id = ?`, [generationId]);
    return row ? reservationFromRow(row) : null;
  }

  async insert(r: Reservation): Promise<void> {
    await this.sql.query(
      `INSERT INTO quota_reservations (generation_id, subject_id, kind, plan, period_start, day, credits, status, expires_at, created_at, ended_at)
       VALUES (?, ?, ?, ?, ?::timestamptz, ?::timestamptz, ?::bigint, ?, ?::timestamptz, ?::timestamptz, ?::timestamptz)`,
      [r.generationId, r.subjectId, r.kind, r.plan, r.periodStart, r.day, r.credits, r.status, r.expiresAt, r.createdAt, r.endedAt],
    );
  }

  async end(generationId: string, status: Exclude<ReservationStatus, "active">, at: Date): Promise<Reservation | null> {
    // The status guard makes the transition happen once, whoever (consumer, release, expiry) comes first.
    const row = await this.sql.one<ReservationRow>(
      `UPDATE quota_reservations SET status = ?, ended_at = ?::timestamptz
        WHERE generation_id = ? AND status = 'active'
        RETURNING ${RESERVATION_COLUMNS}`,
      [status, at, generationId],
    );
    return row ? reservationFromRow(row) : null;
  }

  async due(now: Date, limit: number): Promise<Reservation[]> {
    const rows = await this.sql.query<ReservationRow>(
      `SELECT ${RESERVATION_COLUMNS} FROM quota_reservations
        WHERE status = 'active' AND expires_at <= ?::timestamptz
        ORDER BY expires_at LIMIT ?::integer`,
      [now, limit],
    );
    return rows.map(reservationFromRow);
  }
}

const RESERVATION_COLUMNS = "generation_id, subject_id, kind, plan, period_start, day, credits, status, expires_at, created_at, ended_at";

interface ReservationRow {
  generation_id: string;
  subject_id: string;
  kind: SubjectKind;
  plan: string;
  period_start: Date | string;
  day: Date | string;
  credits: string;
  status: ReservationStatus;
  expires_at: Date | string;
  created_at: Date | string;
  ended_at: Date | string | null;
}

const requiredDate = (value: Date | string, column: string): Date => {
  const date = optionalDate(value);
  assert.ok(date, `INV-10: quota_reservations.${column} is NOT NULL`);
  return date;
};

function reservationFromRow(row: ReservationRow): Reservation {
  return {
    generationId: row.generation_id,
    subjectId: row.subject_id,
    kind: row.kind,
    plan: row.plan,
    periodStart: requiredDate(row.period_start, "period_start"),
    day: requiredDate(row.day, "day"),
    credits: toBigInt(row.credits),
    status: row.status,
    expiresAt: requiredDate(row.expires_at, "expires_at"),
    createdAt: requiredDate(row.created_at, "created_at"),
    endedAt: optionalDate(row.ended_at) ?? null,
  };
}

import assert from "node:assert/strict";
import { optionalDate, toBigInt, type LimitName, type Sql } from "@tally/platform";
import type { QuickReserveAnswer, ReservationStore } from "../domain/ports";
import type { Reservation, ReservationStatus, Subject, SubjectKind } from "../domain/types";
import { dayFromRow, periodFromRow } from "./usage-counter-store";

/** Quota reservations on `quota_reservations`, keyed by generation id; `active` ends exactly once. */
export class SqlReservationStore implements ReservationStore {
  constructor(private readonly sql: Sql) {}

  async find(generationId: string): Promise<Reservation | null> {
    const row = await this.sql.one<ReservationRow>(`SELECT ${RESERVATION_COLUMNS} FROM quota_reservations WHERE generation_id = ?`, [generationId]);
    return row ? reservationFromRow(row) : null;
  }

  async findMany(generationIds: readonly string[]): Promise<Map<string, Reservation>> {
    if (generationIds.length === 0) return new Map();
    const rows = await this.sql.bound<ReservationRow>(FIND_MANY, [[...new Set(generationIds)]]);
    return new Map(rows.map((row) => [row.generation_id, reservationFromRow(row)]));
  }

  async endMany(endings: readonly { generationId: string; status: Exclude<ReservationStatus, "active"> }[], at: Date): Promise<Reservation[]> {
    if (endings.length === 0) return [];
    // The status guard, as in `end`: a reservation no longer active is left as it is.
    const sorted = [...endings].sort((a, b) => (a.generationId < b.generationId ? -1 : a.generationId > b.generationId ? 1 : 0));
    const rows = await this.sql.bound<ReservationRow>(END_MANY, [sorted.map((e) => e.generationId), sorted.map((e) => e.status), at]);
    return rows.map(reservationFromRow);
  }

  async insert(r: Reservation): Promise<void> {
    await this.sql.query(
      `INSERT INTO quota_reservations (generation_id, subject_id, kind, plan, period_start, day, credits, status, expires_at, created_at, ended_at)
       VALUES (?, ?, ?, ?, ?::timestamptz, ?::timestamptz, ?::bigint, ?, ?::timestamptz, ?::timestamptz, ?::timestamptz)`,
      [r.generationId, r.subjectId, r.kind, r.plan, r.periodStart, r.day, r.credits, r.status, r.expiresAt, r.createdAt, r.endedAt],
    );
  }

  async reserve(r: Reservation): Promise<boolean> {
    // One statement: the insert and every reserved-counter bump, so a reservation and its
    // counters move together in one round trip; a conflict (a retry) bumps nothing.
    const row = await this.sql.one<{ inserted: string; periods: string; days: string; subjects: string }>(
      `WITH ins AS (
         INSERT INTO quota_reservations (generation_id, subject_id, kind, plan, period_start, day, credits, status, expires_at, created_at, ended_at)
         VALUES (?, ?, ?, ?, ?::timestamptz, ?::timestamptz, ?::bigint, ?, ?::timestamptz, ?::timestamptz, ?::timestamptz)
         ON CONFLICT (generation_id) DO NOTHING
         RETURNING subject_id, period_start, day, credits),
       p AS (UPDATE period_usage u SET reserved_generations = u.reserved_generations + 1, reserved_credits = u.reserved_credits + ins.credits, updated_at = now()
               FROM ins WHERE u.subject_id = ins.subject_id AND u.period_start = ins.period_start RETURNING 1),
       d AS (UPDATE daily_usage u SET reserved_generations = u.reserved_generations + 1, updated_at = now()
               FROM ins WHERE u.subject_id = ins.subject_id AND u.day = ins.day RETURNING 1),
       s AS (UPDATE subjects s SET active_reservations = s.active_reservations + 1 FROM ins WHERE s.id = ins.subject_id RETURNING 1)
       SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM p) AS periods, (SELECT count(*) FROM d) AS days, (SELECT count(*) FROM s) AS subjects`,
      [r.generationId, r.subjectId, r.kind, r.plan, r.periodStart, r.day, r.credits, r.status, r.expiresAt, r.createdAt, r.endedAt],
    );
    assert.ok(row, "INV-10: a SELECT of counts returns one row");
    const inserted = Number(row.inserted);
    assert.ok(Number(row.periods) === inserted && Number(row.days) === inserted, "INV-6: a reservation's period and day rows are read (created) before it is inserted");
    assert.equal(Number(row.subjects), inserted, "INV-10: a reservation's subject row exists");
    return inserted === 1;
  }

  async checkAndReserve(r: Reservation, subject: Subject, limits: Partial<Record<LimitName, bigint>>): Promise<QuickReserveAnswer> {
    // quota_check_and_reserve (migration 20261124000001): the lock, the checks and the
    // reservation in one statement, so one round trip and no BEGIN/COMMIT.
    const row = await this.sql.one<QuickReserveRow>(
      `SELECT * FROM quota_check_and_reserve(?::uuid, ?, ?, ?::timestamptz, ?::uuid, ?::bigint, ?::timestamptz, ?::timestamptz, ?::timestamptz, ?::timestamptz, ?::jsonb)`,
      [subject.id, subject.kind, subject.plan, subject.periodAnchor, r.generationId, r.credits, r.periodStart, r.day, r.expiresAt, r.createdAt,
        JSON.stringify(Object.fromEntries(Object.entries(limits).map(([name, limit]) => [name, String(limit)])))],
    );
    assert.ok(row, "INV-10: quota_check_and_reserve answers one row");
    if (row.outcome === "existing") {
      assert.ok(row.reservation, "INV-10: an existing reservation is answered with its row");
      return { outcome: "existing", reservation: reservationFromRow(row.reservation) };
    }
    if (row.outcome === "setup_needed") return { outcome: "setup_needed" };
    const { period_end, generations, credits, processing_ms, reserved_generations, reserved_credits, day_generations, day_reserved_generations } = row;
    assert.ok(
      period_end !== null && generations !== null && credits !== null && processing_ms !== null && reserved_generations !== null &&
        reserved_credits !== null && day_generations !== null && day_reserved_generations !== null,
      "INV-10: a checked reservation is answered with the counters it was checked against",
    );
    return {
      outcome: row.outcome,
      reservation: row.reservation ? reservationFromRow(row.reservation) : null,
      period: periodFromRow({ subject_id: subject.id, period_start: r.periodStart, period_end, generations, credits, processing_ms, reserved_generations, reserved_credits }),
      day: dayFromRow({ subject_id: subject.id, day: r.day, generations: day_generations, reserved_generations: day_reserved_generations }),
      activeReservations: Number(row.active_reservations),
    };
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

  async activeOf(subjectId: string): Promise<Reservation[]> {
    const rows = await this.sql.query<ReservationRow>(
      `SELECT ${RESERVATION_COLUMNS} FROM quota_reservations WHERE subject_id = ? AND status = 'active' ORDER BY generation_id`,
      [subjectId],
    );
    return rows.map(reservationFromRow);
  }

  async movePeriod(generationId: string, periodStart: Date): Promise<void> {
    await this.sql.query("UPDATE quota_reservations SET period_start = ?::timestamptz WHERE generation_id = ? AND status = 'active'", [periodStart, generationId]);
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

interface QuickReserveRow {
  outcome: "existing" | "setup_needed" | "reserved" | "refused";
  reservation: ReservationRow | null;
  period_end: Date | string | null;
  generations: string | null;
  credits: string | null;
  processing_ms: string | null;
  reserved_generations: string | null;
  reserved_credits: string | null;
  day_generations: string | null;
  day_reserved_generations: string | null;
  active_reservations: number;
}

export const RESERVATION_COLUMNS = "generation_id, subject_id, kind, plan, period_start, day, credits, status, expires_at, created_at, ended_at";

const FIND_MANY = {
  name: "usage_reservations_find_many",
  text: `SELECT ${RESERVATION_COLUMNS} FROM quota_reservations WHERE generation_id = ANY ($1::uuid[])`,
};

const END_MANY = {
  name: "usage_reservations_end_many",
  text: `UPDATE quota_reservations q SET status = d.status, ended_at = $3::timestamptz
           FROM unnest($1::uuid[], $2::text[]) AS d (generation_id, status)
          WHERE q.generation_id = d.generation_id AND q.status = 'active'
          RETURNING ${RESERVATION_COLUMNS.split(", ").map((c) => `q.${c}`).join(", ")}`,
};

export interface ReservationRow {
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

export function reservationFromRow(row: ReservationRow): Reservation {
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

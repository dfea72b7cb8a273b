import assert from "node:assert/strict";
import { optionalDate, toBigInt, type Sql } from "@tally/platform";
import type { CounterKey, CounterWrite, StoredOrNew, UsageCounterStore } from "../domain/ports";
import type { CounterDifference, DayCounters, DayDelta, PeriodCounters, PeriodDelta, Window } from "../domain/types";

/*
 * Per-period (`period_usage`) and per-day (`daily_usage`) counters. Used counters move in the
 * transaction that appends the usage log entry; a row created later (new window, re-anchoring,
 * subject first seen) starts from what the usage log says for its window, so the counters
 * always equal the log (reconciliation, `differences`, checks both). Callers hold the
 * subject's lock, under which every entry of that subject is appended.
 */

/**
 * The completed usage log entries a counter row counts, for a row source `w(subject_id, start,
 * finish)`: the subject's own entries in the window, except those of a guest's adopted window
 * (they moved to the adopter), plus the entries of the guests it adopted into this window.
 * Written out as well in the summary's function `usage_summary_read` (migration
 * 20261209000001, which replaced 20261207000051's), as is RESERVED_IN_PERIOD: a change here needs a new migration replacing it
 * (services/usage/test/summary.test.ts fails until then).
 */
export function countedEntries(window: "period" | "day"): string {
  const inAdoptedWindow =
    window === "period"
      ? "a.guest_period_start IS NOT NULL AND u.occurred_at >= a.guest_period_start AND u.occurred_at < a.guest_period_end"
      : "u.occurred_at >= a.day AND u.occurred_at < a.day + interval '1 day'";
  const intoThisWindow = window === "period" ? "a.user_period_start = w.start" : "a.day = w.start";
  return `SELECT count(*)::bigint AS generations, coalesce(sum(e.credits), 0)::bigint AS credits,
                 coalesce(sum(e.processing_time_ms), 0)::bigint AS processing_ms
    FROM (
      SELECT u.credits, u.processing_time_ms FROM usage_log u
       WHERE u.outcome = 'completed' AND u.user_id = w.subject_id AND u.occurred_at >= w.start AND u.occurred_at < w.finish
         AND NOT EXISTS (SELECT 1 FROM guest_adoptions a WHERE a.guest_id = u.user_id AND ${inAdoptedWindow})
      UNION ALL
      SELECT u.credits, u.processing_time_ms FROM guest_adoptions a
        JOIN usage_log u ON u.user_id = a.guest_id AND u.outcome = 'completed' AND ${inAdoptedWindow}
       WHERE a.user_id = w.subject_id AND ${intoThisWindow}
    ) e`;
}

/**
 * The active reservations a period row's reserved counters hold, for a row source
 * `w(subject_id, start)`: none for a new window, those moved into it after a re-anchoring.
 */
export const RESERVED_IN_PERIOD = `SELECT count(*)::bigint AS generations, coalesce(sum(q.credits), 0)::bigint AS credits FROM quota_reservations q
  WHERE q.subject_id = w.subject_id AND q.period_start = w.start AND q.status = 'active'`;

const PERIOD_COLUMNS = "subject_id, period_start, period_end, generations, credits, processing_ms, reserved_generations, reserved_credits";
const DAY_COLUMNS = "subject_id, day, generations, reserved_generations";

export class SqlUsageCounterStore implements UsageCounterStore {
  constructor(private readonly sql: Sql) {}

  async period(subjectId: string, period: Window): Promise<PeriodCounters> {
    const found = await this.sql.one<PeriodRow>(`SELECT ${PERIOD_COLUMNS} FROM period_usage WHERE subject_id = ? AND period_start = ?::timestamptz`, [
      subjectId,
      period.start,
    ]);
    if (found) return periodFromRow(found);
    const created = await this.sql.one<PeriodRow>(
      `WITH w AS (SELECT ?::uuid AS subject_id, ?::timestamptz AS start, ?::timestamptz AS finish)
       INSERT INTO period_usage (subject_id, period_start, period_end, generations, credits, processing_ms, reserved_generations, reserved_credits)
       SELECT w.subject_id, w.start, w.finish, c.generations, c.credits, c.processing_ms, r.generations, r.credits
         FROM w CROSS JOIN LATERAL (${countedEntries("period")}) c CROSS JOIN LATERAL (${RESERVED_IN_PERIOD}) r
       RETURNING ${PERIOD_COLUMNS}`,
      [subjectId, period.start, period.end],
    );
    assert.ok(created, "INV-6: a new period row is created under the subject's lock");
    return periodFromRow(created);
  }

  async day(subjectId: string, day: Window): Promise<DayCounters> {
    const found = await this.sql.one<DayRow>(`SELECT ${DAY_COLUMNS} FROM daily_usage WHERE subject_id = ? AND day = ?::timestamptz`, [subjectId, day.start]);
    if (found) return dayFromRow(found);
    const created = await this.sql.one<DayRow>(
      `WITH w AS (SELECT ?::uuid AS subject_id, ?::timestamptz AS start, ?::timestamptz AS finish)
       INSERT INTO daily_usage (subject_id, day, generations)
       SELECT w.subject_id, w.start, c.generations FROM w CROSS JOIN LATERAL (${countedEntries("day")}) c
       RETURNING ${DAY_COLUMNS}`,
      [subjectId, day.start, day.end],
    );
    assert.ok(created, "INV-6: a new day row is created under the subject's lock");
    return dayFromRow(created);
  }

  async windows(subjectId: string, period: Window, day: Window): Promise<{ period: PeriodCounters; day: DayCounters }> {
    // Usually both rows exist: a small statement (cheap to plan) reads them. Otherwise one
    // statement reads each row or creates it from the log; its NOT EXISTS gates are one-time
    // filters, so an existing row never pays for counting the log.
    const found = await this.sql.one<WindowsRow>(
      `SELECT ${PERIOD_COLUMNS.split(", ").map((c) => `p.${c}`).join(", ")}, d.day, d.generations AS day_generations, d.reserved_generations AS day_reserved_generations
         FROM period_usage p JOIN daily_usage d ON d.subject_id = p.subject_id AND d.day = ?::timestamptz
        WHERE p.subject_id = ? AND p.period_start = ?::timestamptz`,
      [day.start, subjectId, period.start],
    );
    const row = found ?? (await this.sql.one<WindowsRow>(
      `WITH wp AS (SELECT ?::uuid AS subject_id, ?::timestamptz AS start, ?::timestamptz AS finish),
            wd AS (SELECT ?::uuid AS subject_id, ?::timestamptz AS start, ?::timestamptz AS finish),
            pf AS (SELECT ${PERIOD_COLUMNS} FROM period_usage WHERE subject_id = (SELECT subject_id FROM wp) AND period_start = (SELECT start FROM wp)),
            pn AS (INSERT INTO period_usage (subject_id, period_start, period_end, generations, credits, processing_ms, reserved_generations, reserved_credits)
                   SELECT w.subject_id, w.start, w.finish, c.generations, c.credits, c.processing_ms, r.generations, r.credits
                     FROM wp w CROSS JOIN LATERAL (${countedEntries("period")}) c CROSS JOIN LATERAL (${RESERVED_IN_PERIOD}) r
                    WHERE NOT EXISTS (SELECT 1 FROM pf)
                   RETURNING ${PERIOD_COLUMNS}),
            df AS (SELECT ${DAY_COLUMNS} FROM daily_usage WHERE subject_id = (SELECT subject_id FROM wd) AND day = (SELECT start FROM wd)),
            dn AS (INSERT INTO daily_usage (subject_id, day, generations)
                   SELECT w.subject_id, w.start, c.generations FROM wd w CROSS JOIN LATERAL (${countedEntries("day")}) c
                    WHERE NOT EXISTS (SELECT 1 FROM df)
                   RETURNING ${DAY_COLUMNS})
       SELECT p.*, d.day, d.generations AS day_generations, d.reserved_generations AS day_reserved_generations
         FROM (SELECT * FROM pf UNION ALL SELECT * FROM pn) p CROSS JOIN (SELECT * FROM df UNION ALL SELECT * FROM dn) d`,
      [subjectId, period.start, period.end, subjectId, day.start, day.end],
    ));
    assert.ok(row, "INV-6: a subject's period and day rows are read or created under its lock");
    return {
      period: periodFromRow(row),
      day: dayFromRow({ subject_id: row.subject_id, day: row.day, generations: row.day_generations, reserved_generations: row.day_reserved_generations }),
    };
  }

  async readMany(periods: readonly CounterKey[], days: readonly CounterKey[]): Promise<{ periods: StoredOrNew<PeriodCounters>[]; days: StoredOrNew<DayCounters>[] }> {
    // Reads only: a missing row is counted from the log (before the batch's entries exist) and
    // written later by writeMany with the batch's deltas, so it is written once, not created then updated.
    const columns = (keys: readonly CounterKey[]) => [keys.map((k) => k.subjectId), keys.map((k) => k.window.start), keys.map((k) => k.window.end)];
    const periodRows = periods.length > 0 ? await this.sql.bound<PeriodRow & { stored: boolean }>(READ_PERIODS, columns(sortedKeys(periods))) : [];
    const dayRows = days.length > 0 ? await this.sql.bound<DayRow & { stored: boolean }>(READ_DAYS, columns(sortedKeys(days))) : [];
    return {
      periods: periodRows.map((row) => ({ row: periodFromRow(row), stored: row.stored })),
      days: dayRows.map((row) => ({ row: dayFromRow(row), stored: row.stored })),
    };
  }

  async writeMany(periods: readonly CounterWrite<PeriodCounters>[], days: readonly CounterWrite<DayCounters>[]): Promise<void> {
    const inOrder = <T extends { key: string }>(writes: readonly T[]) => [...writes].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const check = (counts: { inserted: number; updated: number } | undefined, writes: readonly { created: boolean }[], table: string) => {
      const created = writes.filter((w) => w.created).length;
      assert.deepEqual(counts, { inserted: created, updated: writes.length - created }, `INV-6: every ${table} row of the batch is created or moved once`);
    };
    if (periods.length > 0) {
      const w = inOrder(periods.map((p) => ({ ...p, key: `${p.row.subjectId}/${p.row.periodStart.toISOString()}` })));
      const [counts] = await this.sql.bound<{ inserted: number; updated: number }>(WRITE_PERIODS, [
        w.map((p) => p.row.subjectId), w.map((p) => p.row.periodStart), w.map((p) => p.row.periodEnd), w.map((p) => p.row.generations),
        w.map((p) => p.row.credits), w.map((p) => p.row.processingMs), w.map((p) => p.row.reservedGenerations), w.map((p) => p.row.reservedCredits),
        w.map((p) => p.created),
      ]);
      check(counts, w, "period_usage");
    }
    if (days.length > 0) {
      const w = inOrder(days.map((d) => ({ ...d, key: `${d.row.subjectId}/${d.row.day.toISOString()}` })));
      const [counts] = await this.sql.bound<{ inserted: number; updated: number }>(WRITE_DAYS, [
        w.map((d) => d.row.subjectId), w.map((d) => d.row.day), w.map((d) => d.row.generations), w.map((d) => d.row.reservedGenerations), w.map((d) => d.created),
      ]);
      check(counts, w, "daily_usage");
    }
  }

  async addToPeriod(subjectId: string, periodStart: Date, d: PeriodDelta): Promise<void> {
    const rows = await this.sql.query<{ subject_id: string }>(
      `UPDATE period_usage SET generations = generations + ?::bigint, credits = credits + ?::bigint, processing_ms = processing_ms + ?::bigint,
         reserved_generations = reserved_generations + ?::bigint, reserved_credits = reserved_credits + ?::bigint, updated_at = now()
       WHERE subject_id = ? AND period_start = ?::timestamptz RETURNING subject_id`,
      [d.generations, d.credits, d.processingMs, d.reservedGenerations, d.reservedCredits, subjectId, periodStart],
    );
    assert.equal(rows.length, 1, "INV-6: a period row is read (created) before its counters move");
  }

  async dropPeriods(subjectId: string): Promise<void> {
    await this.sql.query("DELETE FROM period_usage WHERE subject_id = ?", [subjectId]);
  }

  async addToDay(subjectId: string, day: Date, d: DayDelta): Promise<void> {
    const rows = await this.sql.query<{ subject_id: string }>(
      `UPDATE daily_usage SET generations = generations + ?::bigint, reserved_generations = reserved_generations + ?::bigint, updated_at = now()
       WHERE subject_id = ? AND day = ?::timestamptz RETURNING subject_id`,
      [d.generations, d.reservedGenerations, subjectId, day],
    );
    assert.equal(rows.length, 1, "INV-6: a day row is read (created) before its counters move");
  }

  async differences(subjectId?: string): Promise<CounterDifference[]> {
    const only = subjectId ?? null;
    // One statement, one snapshot: period rows, day rows and active counts beside the log and the active reservations.
    const rows = await this.sql.query<DifferenceRow>(
      `SELECT p.subject_id, 'period' AS "window", p.period_start AS window_start, x.counter, x.stored, x.expected
         FROM period_usage p
         CROSS JOIN LATERAL (SELECT p.subject_id, p.period_start AS start, p.period_end AS finish) w
         CROSS JOIN LATERAL (${countedEntries("period")}) c
         CROSS JOIN LATERAL (SELECT count(*)::bigint AS generations, coalesce(sum(q.credits), 0)::bigint AS credits FROM quota_reservations q
                              WHERE q.subject_id = p.subject_id AND q.period_start = p.period_start AND q.status = 'active') r
         CROSS JOIN LATERAL (VALUES ('generations', p.generations, c.generations), ('credits', p.credits, c.credits),
                                    ('processing_ms', p.processing_ms, c.processing_ms), ('reserved_generations', p.reserved_generations, r.generations),
                                    ('reserved_credits', p.reserved_credits, r.credits)) x (counter, stored, expected)
        WHERE (?::uuid IS NULL OR p.subject_id = ?::uuid) AND x.stored <> x.expected
       UNION ALL
       SELECT d.subject_id, 'day', d.day, x.counter, x.stored, x.expected
         FROM daily_usage d
         CROSS JOIN LATERAL (SELECT d.subject_id, d.day AS start, d.day + interval '1 day' AS finish) w
         CROSS JOIN LATERAL (${countedEntries("day")}) c
         CROSS JOIN LATERAL (SELECT count(*)::bigint AS generations FROM quota_reservations q
                              WHERE q.subject_id = d.subject_id AND q.day = d.day AND q.status = 'active') r
         CROSS JOIN LATERAL (VALUES ('generations', d.generations, c.generations), ('reserved_generations', d.reserved_generations, r.generations)) x (counter, stored, expected)
        WHERE (?::uuid IS NULL OR d.subject_id = ?::uuid) AND x.stored <> x.expected
       UNION ALL
       SELECT s.id, 'concurrent', NULL, 'active_reservations', s.active_reservations::bigint,
              (SELECT count(*) FROM quota_reservations q WHERE q.subject_id = s.id AND q.status = 'active')::bigint
         FROM subjects s
        WHERE (?::uuid IS NULL OR s.id = ?::uuid)
          AND s.active_reservations <> (SELECT count(*) FROM quota_reservations q WHERE q.subject_id = s.id AND q.status = 'active')
        ORDER BY 1, 2, 3, 4`,
      [only, only, only, only, only, only],
    );
    return rows.map((row) => ({
      subjectId: row.subject_id,
      window: row.window,
      windowStart: optionalDate(row.window_start) ?? null,
      counter: row.counter,
      stored: toBigInt(row.stored),
      expected: toBigInt(row.expected),
    }));
  }
}

/** Distinct keys in (subject, window start) order: rows are created in one order (INV-9). */
function sortedKeys(keys: readonly CounterKey[]): CounterKey[] {
  const distinct = new Map(keys.map((k) => [`${k.subjectId}/${k.window.start.toISOString()}`, k]));
  return [...distinct.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, k]) => k);
}

/** The stored row of key `w` (`s.found` null when missing), read by the primary key. */
const STORED = (table: string, key: string, columns: string) =>
  `LEFT JOIN LATERAL (SELECT true AS found, ${columns} FROM ${table} x WHERE x.subject_id = w.subject_id AND x.${key} = w.start LIMIT 1) s ON true`;

/*
 * The rows of the keys (in key order), each read (`stored`) or, when missing, counted from the
 * log as `period` / `day` would create it; nothing is written. The LATERAL … LIMIT 1 reads each
 * key by the primary key (a join could hash the whole table for every batch). The counting
 * subquery ends in OFFSET 0 so that it stays a subquery whose `s.found IS NULL` is a one-time
 * filter, checked before it runs: flattened into the join, that test became a join filter
 * applied after counting, and every stored key was counted from the log for nothing (measured
 * at 10M entries: 21 ms → 8 ms for 300 keys of which 30 were missing).
 */
const READ_PERIODS = {
  name: "usage_counters_read_periods",
  text: `WITH w AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS w (subject_id, start, finish))
         SELECT w.subject_id, w.start AS period_start, coalesce(s.period_end, w.finish) AS period_end,
                coalesce(s.generations, n.generations) AS generations, coalesce(s.credits, n.credits) AS credits,
                coalesce(s.processing_ms, n.processing_ms) AS processing_ms, coalesce(s.reserved_generations, n.reserved_generations) AS reserved_generations,
                coalesce(s.reserved_credits, n.reserved_credits) AS reserved_credits, s.found IS NOT NULL AS stored
           FROM w ${STORED("period_usage", "period_start", "x.period_end, x.generations, x.credits, x.processing_ms, x.reserved_generations, x.reserved_credits")}
           LEFT JOIN LATERAL (SELECT c.generations, c.credits, c.processing_ms, r.generations AS reserved_generations, r.credits AS reserved_credits
                                FROM (${countedEntries("period")}) c CROSS JOIN (${RESERVED_IN_PERIOD}) r WHERE s.found IS NULL OFFSET 0) n ON true`,
};

const READ_DAYS = {
  name: "usage_counters_read_days",
  text: `WITH w AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS w (subject_id, start, finish))
         SELECT w.subject_id, w.start AS day, coalesce(s.generations, n.generations) AS generations,
                coalesce(s.reserved_generations, 0) AS reserved_generations, s.found IS NOT NULL AS stored
           FROM w ${STORED("daily_usage", "day", "x.generations, x.reserved_generations")}
           LEFT JOIN LATERAL (SELECT c.generations FROM (${countedEntries("day")}) c WHERE s.found IS NULL OFFSET 0) n ON true`,
};

/*
 * A batch's counter rows in ONE statement per table, keys in order: the rows read as missing
 * (`created`) inserted with their full values (counted from the log plus the batch's moves),
 * the stored ones moved by the batch's deltas. Not an upsert: PostgreSQL checks the proposed
 * row's CHECK constraints before it finds the conflict, and a delta may be negative (a
 * reservation ended). A row read as missing that exists fails the insert (unique key); the
 * counts returned tell the caller every row was written.
 */
const WRITE_PERIODS = {
  name: "usage_counters_write_periods",
  text: `WITH d AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::boolean[])
                        AS d (subject_id, period_start, period_end, generations, credits, processing_ms, reserved_generations, reserved_credits, created)),
              i AS (INSERT INTO period_usage (${PERIOD_COLUMNS})
                    SELECT subject_id, period_start, period_end, generations, credits, processing_ms, reserved_generations, reserved_credits FROM d WHERE created
                    RETURNING 1),
              u AS (UPDATE period_usage u SET generations = u.generations + d.generations, credits = u.credits + d.credits,
                      processing_ms = u.processing_ms + d.processing_ms, reserved_generations = u.reserved_generations + d.reserved_generations,
                      reserved_credits = u.reserved_credits + d.reserved_credits, updated_at = now()
                      FROM d WHERE NOT d.created AND u.subject_id = d.subject_id AND u.period_start = d.period_start
                    RETURNING 1)
         SELECT (SELECT count(*) FROM i)::int AS inserted, (SELECT count(*) FROM u)::int AS updated`,
};

const WRITE_DAYS = {
  name: "usage_counters_write_days",
  text: `WITH d AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::boolean[]) AS d (subject_id, day, generations, reserved_generations, created)),
              i AS (INSERT INTO daily_usage (${DAY_COLUMNS}) SELECT subject_id, day, generations, reserved_generations FROM d WHERE created RETURNING 1),
              u AS (UPDATE daily_usage u SET generations = u.generations + d.generations, reserved_generations = u.reserved_generations + d.reserved_generations,
                      updated_at = now()
                      FROM d WHERE NOT d.created AND u.subject_id = d.subject_id AND u.day = d.day
                    RETURNING 1)
         SELECT (SELECT count(*) FROM i)::int AS inserted, (SELECT count(*) FROM u)::int AS updated`,
};

export interface PeriodRow {
  subject_id: string;
  period_start: Date | string;
  period_end: Date | string;
  generations: string;
  credits: string;
  processing_ms: string;
  reserved_generations: string;
  reserved_credits: string;
}

type WindowsRow = PeriodRow & { day: Date | string; day_generations: string; day_reserved_generations: string };

export interface DayRow {
  subject_id: string;
  day: Date | string;
  generations: string;
  reserved_generations: string;
}

interface DifferenceRow {
  subject_id: string;
  window: "period" | "day" | "concurrent";
  window_start: Date | string | null;
  counter: string;
  stored: string;
  expected: string;
}

function requiredDate(value: Date | string, column: string): Date {
  const date = optionalDate(value);
  assert.ok(date, `INV-6: ${column} is NOT NULL`);
  return date;
}

export function periodFromRow(row: PeriodRow): PeriodCounters {
  return {
    subjectId: row.subject_id,
    periodStart: requiredDate(row.period_start, "period_usage.period_start"),
    periodEnd: requiredDate(row.period_end, "period_usage.period_end"),
    generations: toBigInt(row.generations),
    credits: toBigInt(row.credits),
    processingMs: toBigInt(row.processing_ms),
    reservedGenerations: toBigInt(row.reserved_generations),
    reservedCredits: toBigInt(row.reserved_credits),
  };
}

export function dayFromRow(row: DayRow): DayCounters {
  return {
    subjectId: row.subject_id,
    day: requiredDate(row.day, "daily_usage.day"),
    generations: toBigInt(row.generations),
    reservedGenerations: toBigInt(row.reserved_generations),
  };
}

import assert from "node:assert/strict";
import { optionalDate, type Sql } from "@tally/platform";
import type { SubjectStore } from "../domain/ports";
import type { StoredSubject, Subject, SubjectKind } from "../domain/types";

/** Subjects on `subjects`: the row whose lock serialises every limit change of one subject. */
export class SqlSubjectStore implements SubjectStore {
  constructor(private readonly sql: Sql) {}

  async upsertAndLock(subject: Subject): Promise<StoredSubject> {
    // ON CONFLICT DO UPDATE locks the existing row like FOR UPDATE; a new row is ours until commit.
    const row = await this.sql.one<SubjectRow>(
      `INSERT INTO subjects AS s (id, kind, plan, period_anchor) VALUES (?, ?, ?, ?::timestamptz)
       ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, plan = excluded.plan, period_anchor = excluded.period_anchor,
         updated_at = CASE WHEN (s.kind, s.plan, s.period_anchor) IS DISTINCT FROM (excluded.kind, excluded.plan, excluded.period_anchor)
                           THEN now() ELSE s.updated_at END
       RETURNING ${SUBJECT_COLUMNS}`,
      [subject.id, subject.kind, subject.plan, subject.periodAnchor],
    );
    assert.ok(row, "INV-10: an upsert … RETURNING of a subject returns the row");
    return subjectFromRow(row);
  }

  async lockOrCreate(ids: readonly string[]): Promise<StoredSubject[]> {
    const sorted = [...new Set(ids)].sort();
    if (sorted.length === 0) return [];
    await this.sql.bound(CREATE_MISSING, [sorted]);
    const rows = await this.sql.bound<SubjectRow>(LOCK_IN_ORDER, [sorted]);
    return rows.map(subjectFromRow);
  }

  async findMany(ids: readonly string[]): Promise<StoredSubject[]> {
    if (ids.length === 0) return [];
    const rows = await this.sql.bound<SubjectRow>(FIND_MANY, [[...new Set(ids)]]);
    return rows.map(subjectFromRow);
  }

  async find(id: string): Promise<StoredSubject | null> {
    const row = await this.sql.one<SubjectRow>(`SELECT ${SUBJECT_COLUMNS} FROM subjects WHERE id = ?`, [id]);
    return row ? subjectFromRow(row) : null;
  }

  async addActiveReservations(id: string, delta: number): Promise<void> {
    const rows = await this.sql.query<{ id: string }>(
      "UPDATE subjects SET active_reservations = active_reservations + ?::integer WHERE id = ? RETURNING id",
      [delta, id],
    );
    assert.equal(rows.length, 1, "INV-10: a reservation's subject row exists");
  }

  async addActiveReservationsMany(deltas: readonly { id: string; delta: number }[]): Promise<void> {
    if (deltas.length === 0) return;
    const sorted = [...deltas].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const rows = await this.sql.bound<{ id: string }>(ADD_ACTIVE_MANY, [sorted.map((d) => d.id), sorted.map((d) => d.delta)]);
    assert.equal(rows.length, new Set(sorted.map((d) => d.id)).size, "INV-10: a reservation's subject row exists");
  }

  async markAdopted(guestId: string, userId: string): Promise<void> {
    await this.sql.query("UPDATE subjects SET adopted_by = ?, kind = 'guest', updated_at = now() WHERE id = ?", [userId, guestId]);
  }
}

const SUBJECT_COLUMNS = "id, kind, plan, period_anchor, active_reservations, adopted_by";

const CREATE_MISSING = {
  name: "usage_subjects_create_missing",
  text: "INSERT INTO subjects (id) SELECT unnest($1::uuid[]) ORDER BY 1 ON CONFLICT (id) DO NOTHING",
};
const LOCK_IN_ORDER = {
  name: "usage_subjects_lock_in_order",
  text: `SELECT ${SUBJECT_COLUMNS} FROM subjects WHERE id = ANY ($1::uuid[]) ORDER BY id FOR UPDATE`,
};
const FIND_MANY = { name: "usage_subjects_find_many", text: `SELECT ${SUBJECT_COLUMNS} FROM subjects WHERE id = ANY ($1::uuid[])` };
/** The deltas are one per subject id (the caller sums them). */
const ADD_ACTIVE_MANY = {
  name: "usage_subjects_add_active_many",
  text: `UPDATE subjects s SET active_reservations = s.active_reservations + d.delta
           FROM unnest($1::uuid[], $2::integer[]) AS d (id, delta) WHERE s.id = d.id RETURNING s.id`,
};

interface SubjectRow {
  id: string;
  kind: SubjectKind;
  plan: string | null;
  period_anchor: Date | string | null;
  active_reservations: number;
  adopted_by: string | null;
}

function subjectFromRow(row: SubjectRow): StoredSubject {
  return {
    id: row.id,
    kind: row.kind,
    plan: row.plan,
    periodAnchor: optionalDate(row.period_anchor) ?? null,
    activeReservations: Number(row.active_reservations),
    adoptedBy: row.adopted_by,
  };
}

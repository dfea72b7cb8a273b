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
    const list = [...new Set(ids)].sort().join(",");
    await this.sql.query("INSERT INTO subjects (id) SELECT unnest(string_to_array(?, ',')::uuid[]) ON CONFLICT (id) DO NOTHING", [list]);
    const rows = await this.sql.query<SubjectRow>(
      `SELECT ${SUBJECT_COLUMNS} FROM subjects WHERE id = ANY(string_to_array(?, ',')::uuid[]) ORDER BY id FOR UPDATE`,
      [list],
    );
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

  async markAdopted(guestId: string, userId: string): Promise<void> {
    await this.sql.query("UPDATE subjects SET adopted_by = ?, kind = 'guest', updated_at = now() WHERE id = ?", [userId, guestId]);
  }
}

const SUBJECT_COLUMNS = "id, kind, plan, period_anchor, active_reservations, adopted_by";

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

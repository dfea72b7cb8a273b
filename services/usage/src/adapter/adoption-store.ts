import assert from "node:assert/strict";
import { optionalDate, toBigInt, type Sql } from "@tally/platform";
import type { AdoptionStore, GuestAdoption } from "../domain/ports";
import type { Window } from "../domain/types";

/** Guest adoptions on `guest_adoptions`: one row per guest (its primary key makes adoption once only). */
export class SqlAdoptionStore implements AdoptionStore {
  constructor(private readonly sql: Sql) {}

  async find(guestId: string): Promise<GuestAdoption | null> {
    const row = await this.sql.one<AdoptionRow>(`SELECT ${ADOPTION_COLUMNS} FROM guest_adoptions WHERE guest_id = ?`, [guestId]);
    return row ? adoptionFromRow(row) : null;
  }

  async adoptedBy(userId: string): Promise<GuestAdoption[]> {
    const rows = await this.sql.query<AdoptionRow>(`SELECT ${ADOPTION_COLUMNS} FROM guest_adoptions WHERE user_id = ? ORDER BY guest_id`, [userId]);
    return rows.map(adoptionFromRow);
  }

  async moveUserPeriod(guestId: string, userPeriod: Window): Promise<void> {
    await this.sql.query("UPDATE guest_adoptions SET user_period_start = ?::timestamptz, user_period_end = ?::timestamptz WHERE guest_id = ?", [
      userPeriod.start,
      userPeriod.end,
      guestId,
    ]);
  }

  async insert(a: GuestAdoption): Promise<void> {
    await this.sql.query(
      `INSERT INTO guest_adoptions (guest_id, user_id, guest_period_start, guest_period_end, user_period_start, user_period_end, day, generations_moved, adopted_at)
       VALUES (?, ?, ?::timestamptz, ?::timestamptz, ?::timestamptz, ?::timestamptz, ?::timestamptz, ?::bigint, ?::timestamptz)`,
      [a.guestId, a.userId, a.guestPeriod?.start ?? null, a.guestPeriod?.end ?? null, a.userPeriod.start, a.userPeriod.end, a.day, a.generationsMoved, a.adoptedAt],
    );
  }
}

const ADOPTION_COLUMNS = "guest_id, user_id, guest_period_start, guest_period_end, user_period_start, user_period_end, day, generations_moved, adopted_at";

function adoptionFromRow(row: AdoptionRow): GuestAdoption {
  const start = optionalDate(row.guest_period_start);
  const end = optionalDate(row.guest_period_end);
  return {
    guestId: row.guest_id,
    userId: row.user_id,
    guestPeriod: start && end ? { start, end } : null,
    userPeriod: { start: requiredDate(row.user_period_start), end: requiredDate(row.user_period_end) },
    day: requiredDate(row.day),
    generationsMoved: toBigInt(row.generations_moved),
    adoptedAt: requiredDate(row.adopted_at),
  };
}

interface AdoptionRow {
  guest_id: string;
  user_id: string;
  guest_period_start: Date | string | null;
  guest_period_end: Date | string | null;
  user_period_start: Date | string;
  user_period_end: Date | string;
  day: Date | string;
  generations_moved: string;
  adopted_at: Date | string;
}

function requiredDate(value: Date | string): Date {
  const date = optionalDate(value);
  assert.ok(date, "INV-6: guest_adoptions.user_period_start, user_period_end, day and adopted_at are NOT NULL");
  return date;
}

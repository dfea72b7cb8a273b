import { Migration } from "@mikro-orm/migrations";

/**
 * Faster ingest (the rollups' day bitmaps): `usage_days_merge` becomes one expression the planner
 * inlines into the calling statement (the old body had a FROM clause, so every call ran as a
 * separate SQL function, twice per `subject_activity` row of every batch), with two fast paths
 * that stay in bit-string operations: a bitmap that starts after the stored one ends is appended
 * (zeros for the days between), and one inside the stored span is OR-ed in place. Every other
 * case is the old expression, unchanged. `usage_days_bitmap` answers a single day (the usual
 * group of a batch) without its loop. Same answers for every input (INV-6: the rollups still
 * equal `subject_activity_from_log`, which uses the same bitmap function).
 * (No question marks in this SQL: the migration runner would read one as a bind parameter.)
 */
export class Migration20261206000001 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
CREATE OR REPLACE FUNCTION usage_days_merge(f1 date, d1 varbit, f2 date, d2 varbit) RETURNS varbit LANGUAGE sql IMMUTABLE AS $fn$
  SELECT CASE
    WHEN f2 >= f1 + length(d1) THEN d1 || repeat('0', f2 - f1 - length(d1))::varbit || d2
    WHEN f2 >= f1 AND f2 + length(d2) <= f1 + length(d1) THEN overlay(d1 PLACING substring(d1 FROM f2 - f1 + 1 FOR length(d2)) | d2 FROM f2 - f1 + 1)
    ELSE (repeat('0', f1 - least(f1, f2)) || d1::text
          || repeat('0', greatest(f1 + length(d1) - 1, f2 + length(d2) - 1) - (f1 + length(d1) - 1)))::varbit
       | (repeat('0', f2 - least(f1, f2)) || d2::text
          || repeat('0', greatest(f1 + length(d1) - 1, f2 + length(d2) - 1) - (f2 + length(d2) - 1)))::varbit
  END
$fn$`);
    this.addSql(`
CREATE OR REPLACE FUNCTION usage_days_bitmap(first_day date, last_day date, active date[]) RETURNS varbit LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
  bitmap varbit;
  d date;
BEGIN
  IF first_day = last_day AND cardinality(active) > 0 THEN
    RETURN B'1';
  END IF;
  bitmap := repeat('0', last_day - first_day + 1)::varbit;
  FOREACH d IN ARRAY active LOOP
    bitmap := set_bit(bitmap, d - first_day, 1);
  END LOOP;
  RETURN bitmap;
END
$fn$`);
  }
}

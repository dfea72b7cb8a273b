/**
 * Billing periods: monthly from an account's anchor (`current_period_start`), in UTC, with the
 * anchor's day clamped to the month's last day (anchored on Jan 31: Feb 28 or 29, then Mar 31).
 * The current period is computed from the anchor and the clock, never stored and reset by a
 * job, so it cannot be late or skipped. Days are UTC days.
 */

/** A half-open time window `[start, end)`. */
export interface TimeWindow {
  start: Date;
  end: Date;
}

const daysInMonth = (year: number, monthIndex: number): number => new Date(Date.UTC(year, monthIndex + 1, 0)).getUTCDate();

/** The start of the period `monthsAfter` months after the one that starts at `anchor` (the anchor's day clamped to the month). */
export function periodStartAfter(anchor: Date, monthsAfter: number): Date {
  const totalMonths = anchor.getUTCFullYear() * 12 + anchor.getUTCMonth() + monthsAfter;
  const year = Math.floor(totalMonths / 12);
  const monthIndex = totalMonths - year * 12;
  const day = Math.min(anchor.getUTCDate(), daysInMonth(year, monthIndex));
  return new Date(
    Date.UTC(year, monthIndex, day, anchor.getUTCHours(), anchor.getUTCMinutes(), anchor.getUTCSeconds(), anchor.getUTCMilliseconds()),
  );
}

/**
 * The billing period that contains `at` for an account anchored at `anchor`: `[start, end)`.
 * For `at` before the anchor it is the period before the anchor's (a late or back-dated event
 * still lands in a well-defined period).
 */
export function billingPeriodAt(anchor: Date, at: Date): TimeWindow {
  const months = (at.getUTCFullYear() - anchor.getUTCFullYear()) * 12 + (at.getUTCMonth() - anchor.getUTCMonth());
  // The month difference is right or one too many (the anchor's day or time not yet reached).
  for (const candidate of [months, months - 1, months + 1, months - 2]) {
    const start = periodStartAfter(anchor, candidate);
    const end = periodStartAfter(anchor, candidate + 1);
    if (start.getTime() <= at.getTime() && at.getTime() < end.getTime()) return { start, end };
  }
  throw new RangeError(`no billing period of anchor ${anchor.toISOString()} contains ${at.toISOString()}`);
}

/** The UTC day that contains `at`: `[00:00, next 00:00)`. */
export function utcDayAt(at: Date): TimeWindow {
  const start = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate()));
  return { start, end: new Date(start.getTime() + 86_400_000) };
}

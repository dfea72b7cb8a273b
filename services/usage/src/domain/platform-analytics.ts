import type { Window } from "./types";

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * A window [start, end) cut where the platform rollups can serve it: `days`, the whole UTC days
 * inside it (`from` inclusive, `to` exclusive, `YYYY-MM-DD`; null when it holds none), and
 * `edges`, the partial days before and after them (at most two, each non-empty), which are read
 * from the usage log. Together they cover the window exactly once.
 */
export interface WindowByDays {
  days: { from: string; to: string } | null;
  edges: Window[];
}

const dayOf = (date: Date) => date.toISOString().slice(0, 10);

/** Cuts `window` into whole UTC days and the partial days at its edges (see WindowByDays). */
export function splitAtUtcDays(window: Window): WindowByDays {
  const first = new Date(Math.ceil(window.start.getTime() / DAY_MS) * DAY_MS);
  const last = new Date(Math.floor(window.end.getTime() / DAY_MS) * DAY_MS);
  if (first >= last) return { days: null, edges: [window] };
  const edges = [
    { start: window.start, end: first },
    { start: last, end: window.end },
  ].filter((edge) => edge.start < edge.end);
  return { days: { from: dayOf(first), to: dayOf(last) }, edges };
}

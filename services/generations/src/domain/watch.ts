import type { Generation, GenerationStatusName } from "./types";

/** Changes of a generation as WatchGeneration streams them (INV-12). */

/** What the `generation_events` notification carries (the trigger's JSON). */
export interface ChangeNotice {
  id: string;
  /** The row's `event_seq` after the change. */
  seq: bigint;
  status: GenerationStatusName;
  /** 0..100. */
  progressPercent: number;
}

/** One change as a watcher receives it; `generation` is set on snapshots and changes of status. */
export interface WatchedChange extends ChangeNotice {
  generation?: Generation;
}

/** A parsed `generation_events` payload, or null when it is not one (logged by the caller). */
export function parseChangeNotice(payload: string): ChangeNotice | null {
  try {
    const value = JSON.parse(payload) as { id?: unknown; seq?: unknown; status?: unknown; progress_percent?: unknown };
    if (typeof value.id !== "string" || typeof value.seq !== "number" || typeof value.status !== "string" || typeof value.progress_percent !== "number") return null;
    return { id: value.id, seq: BigInt(value.seq), status: value.status as GenerationStatusName, progressPercent: value.progress_percent };
  } catch {
    return null;
  }
}


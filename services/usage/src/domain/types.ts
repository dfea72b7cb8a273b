/**
 * The usage service's domain types. Money is int64 micro-units (`costMicros`), credits and
 * durations are int64 (`bigint`): no floats anywhere.
 */

/** Outcome of a generation as the usage log records it. */
export type UsageOutcome = "completed" | "failed";

/**
 * A usage log entry before it is stored: the immutable fact (INV-8) that one generation
 * completed (billable) or failed (not billable).
 */
export interface UsageLogEntryDraft {
  /** The generation event's id (lower-case UUID): the inbox key that makes recording exactly-once (INV-5). */
  eventId: string;
  userId: string;
  generationId: string;
  outcome: UsageOutcome;
  /** True for a completion only: a failed generation's credits were released, not charged. */
  billable: boolean;
  inputType: string;
  provider: string;
  /** "trial", "purchased" or "mixed" for a completion; null for a failure. */
  creditType: string | null;
  /** Credits captured (completion) or held then released (failure). */
  credits: bigint;
  costMicros: bigint;
  processingTimeMs: bigint;
  errorMessage: string | null;
  errorCode: string | null;
  occurredAt: Date;
}

/** A usage log entry as stored, with its id and the time it was recorded. */
export interface UsageLogEntry extends UsageLogEntryDraft {
  id: string;
  recordedAt: Date;
}

/** How one usage log entry moves a user's lifetime stats. */
export interface UserStatsDelta {
  generations: bigint;
  failed: bigint;
  costMicros: bigint;
  creditsSpent: bigint;
}

/** A user's lifetime totals, derived from the usage log (INV-6). */
export interface UserStats {
  userId: string;
  /** Completed generations. */
  totalGenerations: bigint;
  /** Failed generations. */
  totalFailed: bigint;
  totalCostMicros: bigint;
  totalCreditsSpent: bigint;
  /** Null when the user has no usage yet. */
  lastActivityAt: Date | null;
}

/** One user's stored stats beside the stats recomputed from the usage log; null where there are none. */
export interface StatsBesideUsageLog {
  userId: string;
  stored: UserStats | null;
  fromUsageLog: UserStats | null;
}

/** One user whose stored stats differ from what the usage log says (a broken INV-6). */
export interface StatsDifference {
  userId: string;
  stored: UserStats;
  fromUsageLog: UserStats;
}

/** What recording one event did: recorded it, or found its event id already in the inbox. */
export type RecordOutcome = { kind: "recorded"; entry: UsageLogEntry } | { kind: "duplicate"; eventId: string };

/** One page of a user's usage log, newest first, and the token of the next page ("" at the end). */
export interface UsageLogPage {
  entries: UsageLogEntry[];
  nextPageToken: string;
}

/** A usage log entry read for a page, with its `occurred_at` in microseconds (PostgreSQL's precision) for the next cursor. */
export interface PagedUsageLogEntry {
  entry: UsageLogEntry;
  occurredAtMicros: bigint;
}

/** A message that can never be processed, as the consumer received it, and why. */
export interface DeadLetter {
  stream: string;
  streamSequence: number;
  subject: string;
  payload: Uint8Array;
  headers: Record<string, string[]>;
  error: string;
  deliveryCount: number;
}

import type { LimitName } from "@tally/platform";
/**
 * The usage service's domain types. Money is int64 micro-units (`costMicros`), credits and
 * durations are int64 (`bigint`): no floats anywhere.
 */

/** Outcome of a generation as the usage log records it. */
export type UsageOutcome = "completed" | "failed";

/**
 * How a generation is billed: `original` (a new job), `free_retry` (a retry of a failed job,
 * free up to the plan's allowance) or `paid_regeneration` (a new run of a completed job,
 * charged as usual).
 */
export type BillingClassification = "original" | "free_retry" | "paid_regeneration";
export const BILLING_CLASSIFICATIONS: readonly BillingClassification[] = ["original", "free_retry", "paid_regeneration"];

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
  billingClassification: BillingClassification;
  /** Why the classification applies; null when none. */
  billingReason: string | null;
  /** The generation this one retries or regenerates (lower-case UUID); null for an original. */
  parentGenerationId: string | null;
  /** Size of the stored output, in bytes (0 for a failure). */
  outputBytes: bigint;
}

/**
 * What usage knew of the entry's subject when it recorded the entry: its plan and that plan's
 * limits, the billing period the entry counts in, and the subject's kind. Null where unknown
 * (a subject never reserved for has no plan or anchor; entries from before these fields have
 * none of them).
 */
export interface SubjectSnapshot {
  plan: string | null;
  /** The plan's limits by name, e.g. `{generations_per_period: 100}`; null when the plan is unknown. */
  planLimits: Record<string, number> | null;
  period: Window | null;
  subjectKind: SubjectKind | null;
}

/** A usage log entry as stored, with its id, the subject snapshot and the time it was recorded. */
export interface UsageLogEntry extends UsageLogEntryDraft, SubjectSnapshot {
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
  /** Null when the user has no usage yet (downloads do not move it). */
  lastActivityAt: Date | null;
  /** Download requests of the user's outputs (not billable). */
  totalDownloaded: bigint;
}

/**
 * What a user's lifetime stats add to the stored row, read from facts in one snapshot: the
 * month rows summed (output bytes, processing time and the breakdowns of completed and failed
 * generations), the cancellation log, the active reservations and the first usage log entry.
 */
export interface LifetimeDetail {
  cancelled: bigint;
  running: bigint;
  outputBytes: bigint;
  processingMs: bigint;
  byInputType: Record<string, OutcomeCounts>;
  byProvider: Record<string, OutcomeCounts>;
  /** Null when the user has no usage log entry. */
  firstActivityAt: Date | null;
}

/** A user's lifetime stats as GetUserStats answers them. */
export type LifetimeStats = UserStats & LifetimeDetail & { created: bigint };

/** One download of a generation's output, as the `generation.downloaded` event tells it. */
export interface DownloadDraft {
  /** Lower-case UUID: the inbox key (INV-5) and the key of the download log row. */
  eventId: string;
  userId: string;
  generationId: string;
  outputBytes: bigint;
  occurredAt: Date;
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
export type RecordOutcome = { kind: "recorded"; entryId: string } | { kind: "duplicate"; eventId: string };

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

/** The current time; services take one so tests can set it (default `() => new Date()`). */
export type Clock = () => Date;

/** Whether a subject of limits is a signed-up user or a guest. */
export type SubjectKind = "user" | "guest";

/** Whom limits apply to, as the caller (generations, gateway) names it from the credits account. */
export interface Subject {
  /** The account id (lower-case UUID): the `user_id` of its generations and usage events. */
  id: string;
  kind: SubjectKind;
  /** A plan of the catalogue. */
  plan: string;
  /** The billing anchor (`current_period_start`): periods are monthly from it, in UTC. */
  periodAnchor: Date;
}

/**
 * A subject as usage stores it (the latest the callers named). `plan` and `periodAnchor` are
 * null for a subject seen only through its usage events (older jobs, never reserved for).
 */
export interface StoredSubject {
  id: string;
  kind: SubjectKind;
  plan: string | null;
  periodAnchor: Date | null;
  /** Reservations now active: the count `concurrent_generations` limits. */
  activeReservations: number;
  /** The user who adopted this guest; null otherwise. */
  adoptedBy: string | null;
}

/** A half-open time window `[start, end)` (a billing period or a UTC day). */
export interface Window {
  start: Date;
  end: Date;
}

/** One subject's counters in one billing period: used (from the usage log) and reserved (active reservations). */
export interface PeriodCounters {
  subjectId: string;
  periodStart: Date;
  periodEnd: Date;
  /** Completed generations. */
  generations: bigint;
  /** Credits captured by completed generations. */
  credits: bigint;
  /** Processing time of completed generations, in milliseconds. */
  processingMs: bigint;
  reservedGenerations: bigint;
  reservedCredits: bigint;
}

/** One subject's counters in one UTC day. */
export interface DayCounters {
  subjectId: string;
  day: Date;
  generations: bigint;
  reservedGenerations: bigint;
}

/** What a change adds to a period's counters (negative to take back). */
export interface PeriodDelta {
  generations: bigint;
  credits: bigint;
  processingMs: bigint;
  reservedGenerations: bigint;
  reservedCredits: bigint;
}

/** What a change adds to a day's counters (negative to take back). */
export interface DayDelta {
  generations: bigint;
  reservedGenerations: bigint;
}

/** Lifecycle of a quota reservation: `active` ends exactly once, in one of the other three. */
export type ReservationStatus = "active" | "consumed" | "released" | "expired";

/** Quota set aside for one generation until it completes, fails, is cancelled or expires. */
export interface Reservation {
  generationId: string;
  subjectId: string;
  kind: SubjectKind;
  plan: string;
  /** The period and the UTC day whose reserved counters hold it. */
  periodStart: Date;
  day: Date;
  /** Credits reserved against credits_per_period. */
  credits: bigint;
  status: ReservationStatus;
  expiresAt: Date;
  createdAt: Date;
  /** When it left `active`; null while active. */
  endedAt: Date | null;
}

/** Where one subject stands against one limit of its plan. */
export interface LimitStatus {
  name: string;
  window: "period" | "day" | "concurrent";
  limit: bigint;
  used: bigint;
  reserved: bigint;
  /** max(0, limit - used - reserved). */
  remaining: bigint;
  /** True when one more generation would pass this limit now (remaining > 0). */
  withinLimit: boolean;
  /** When the window starts again; null for concurrent limits. */
  resetsAt: Date | null;
}

/** A subject's limits in its current period (ListLimits). */
export interface LimitsReport {
  plan: string;
  period: Window;
  limits: LimitStatus[];
}

/** One counter that differs from what the usage log (or the active reservations) says. */
export interface CounterDifference {
  subjectId: string;
  window: "period" | "day" | "concurrent";
  /** The window's start; null for the concurrent count. */
  windowStart: Date | null;
  counter: string;
  stored: bigint;
  expected: bigint;
}

/** A soft threshold of a limit reached in one window: announced once per (subject, limit, threshold, window start). */
export interface ThresholdCrossing {
  eventId: string;
  /** When the usage that crossed it occurred (the usage event's occurred_at). */
  occurredAt: Date;
  subjectId: string;
  subjectKind: SubjectKind;
  plan: string;
  limitName: LimitName;
  /** The threshold, in per mille of the limit (800 = 0.8). */
  thresholdPerMille: number;
  limit: bigint;
  /** Used in the window after the event, in the limit's unit. */
  used: bigint;
  /** Start of the period or UTC day the limit counts in. */
  windowStart: Date;
}

/** Completed and failed generations under one key of a breakdown. */
export interface OutcomeCounts {
  completed: bigint;
  failed: bigint;
}

/**
 * One subject's usage in one UTC month, derived from the usage log (INV-6). Credits, cost,
 * processing time and output bytes are those of completed generations.
 */
export interface MonthlyAnalytics {
  subjectId: string;
  /** `YYYY-MM` (UTC). */
  month: string;
  generations: bigint;
  failed: bigint;
  credits: bigint;
  costMicros: bigint;
  processingMs: bigint;
  outputBytes: bigint;
  byInputType: Record<string, OutcomeCounts>;
  byProvider: Record<string, OutcomeCounts>;
  /** By billing classification (`original`, `free_retry`, `paid_regeneration`). */
  byClassification: Record<string, OutcomeCounts>;
  /** The plans in force on the month's entries, sorted. */
  plans: string[];
  /** More than one plan was in force during the month. */
  planChanged: boolean;
}

/** A month whose stored analytics differ from what the usage log says (a missing side is null). */
export interface MonthlyAnalyticsDifference {
  subjectId: string;
  month: string;
  stored: MonthlyAnalytics | null;
  expected: MonthlyAnalytics | null;
}

/**
 * A row of a platform rollup (`platform_daily_usage` or `subject_activity`) found on one side
 * only: `stored` (in the table, not what the log gives) or `log` (what the log gives, missing
 * from the table). A row whose values differ shows on both sides. `row` is the row as JSON.
 */
export interface RollupDifference {
  rollup: "platform_daily_usage" | "subject_activity";
  side: "stored" | "log";
  row: Record<string, unknown>;
}

/** Totals of a user's usage log entries in a window; credits, cost, processing time and output bytes of completed generations. */
export interface UsageTotals {
  generations: bigint;
  failed: bigint;
  credits: bigint;
  costMicros: bigint;
  processingMs: bigint;
  outputBytes: bigint;
}

/** Platform-wide figures of the usage log entries in a window (admin analytics). */
export interface PlatformAnalytics {
  generations: bigint;
  failed: bigint;
  credits: bigint;
  costMicros: bigint;
  /** costMicros / generations, rounded down; 0 without completed generations. */
  averageCostMicros: bigint;
  uniqueUsers: bigint;
  uniqueGuests: bigint;
  /** By the plan recorded with each entry ("" when unknown). */
  byPlan: Record<string, OutcomeCounts>;
  byProvider: Record<string, OutcomeCounts>;
  byInputType: Record<string, OutcomeCounts>;
  /** Revenue, provider cost and margin: in all, by plan and by provider (see PlatformMoney). */
  money: PlatformMoney;
}

/**
 * What generations earned and cost, in micro-units of the currency: `revenueMicros`, the
 * credits charged for completed generations valued at their plan's `credit_price_micros`;
 * `costMicros`, what the provider's work cost for every entry, completed or failed;
 * `marginMicros` = revenue − cost (negative at a loss).
 */
export interface Money {
  credits: bigint;
  revenueMicros: bigint;
  costMicros: bigint;
  marginMicros: bigint;
}

/** Money in all, by the plan recorded with each entry ("" when unknown) and by provider. */
export interface PlatformMoney {
  total: Money;
  byPlan: Record<string, Money>;
  byProvider: Record<string, Money>;
}

/** What the stores answer for platform analytics: everything but the money, and the spend it is valued from. */
export type PlatformFigures = Omit<PlatformAnalytics, "money"> & { spend: PlanProviderSpend[] };

/** Credits of completed entries and cost of all entries of one plan and provider (what money is computed from). */
export interface PlanProviderSpend {
  plan: string;
  provider: string;
  credits: bigint;
  costMicros: bigint;
}

/** Rows written per table by a full rebuild of the tables derived from the usage log (INV-6). */
export interface DerivedTablesRebuild {
  userStats: number;
  periodUsage: number;
  dailyUsage: number;
  /** Subjects whose active reservation count was rewritten (every subject). */
  subjects: number;
  monthlyAnalytics: number;
  /** Rows of `platform_daily_usage` and `subject_activity`. */
  platformRollups: number;
}

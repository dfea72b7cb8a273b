import type { PlatformFigures } from "./money";
import type { LimitName, OutboxStore, UnitOfWork } from "@tally/platform";
import type { UsageLogCursor } from "./usage-log-cursor";
import type {
  CounterDifference,
  LifetimeDetail,
  DerivedTablesRebuild,
  DayCounters,
  DayDelta,
  PeriodCounters,
  PeriodDelta,
  Reservation,
  ReservationStatus,
  StoredSubject,
  Subject,
  ThresholdCrossing,
  Window,
  DeadLetter,
  DownloadDraft,
  MonthlyAnalytics,
  MonthlyAnalyticsDifference,
  UsageTotals,
  RollupDifference,
  PagedUsageLogEntry,
  SubjectSnapshot,
  StatsBesideUsageLog,
  UsageLogEntryDraft,
  UserStats,
  UserStatsDelta,
} from "./types";
import type { UsageSummaryRead } from "./usage-summary";

/*
 * The stores the usage rules need, in domain terms. The adapter implements them in SQL
 * (adapter/*-store.ts) bound to one transaction or connection scope of a UsageUnitOfWork.
 */

/** The consumer's inbox: the event ids already recorded (INV-5). */
export interface InboxStore {
  /**
   * Records the event ids of `events` as processed, in one statement (ids inserted in id order,
   * INV-9): answers the ids this call recorded, each once however often it appears in `events`;
   * an id missing from the answer was already processed (a duplicate: record nothing).
   * Concurrent claims of one id wait on each other until the first commits, so exactly one wins.
   */
  claimMany(events: readonly { eventId: string; subject: string }[]): Promise<Set<string>>;
}

/** The usage log: append-only (INV-8), never updated or deleted. */
export interface UsageLogStore {
  /** Totals of the user's entries that occurred in `window` ([start, end)); completions bring their credits, cost, processing time and output bytes. */
  totals(userId: string, window: Window): Promise<UsageTotals>;
  /** Platform-wide figures of the entries in `window`, of `plan` only when given, aggregated from the log itself (the reference the rollups are checked against). */
  platform(window: Window, plan: string | null): Promise<PlatformFigures>;
  /**
   * Appends a batch of entries (each with its id and the `snapshot` of its subject) in one statement and, in that same statement, adds them to the
   * monthly analytics and the subjects' activity rollup (INV-6: the derived rows move with the log). The platform's daily rollup is
   * `addToPlatformDaily`, in the same transaction.
   */
  appendMany(entries: readonly { id: string; draft: UsageLogEntryDraft; snapshot: SubjectSnapshot }[]): Promise<void>;
  /**
   * Adds appended entries to the platform's daily rollup (`platform_daily_usage`: entries, credits and cost per UTC day, plan,
   * provider, input type and outcome), in one statement that sums them per key, keys in order (INV-9). Those rows are shared by every batch: the caller
   * makes this its transaction's last statement, so their locks are held only while it commits (INV-6 once it commits).
   */
  addToPlatformDaily(entries: readonly { draft: UsageLogEntryDraft; snapshot: SubjectSnapshot }[]): Promise<void>;
  /** Appends downloads to the download log, in one statement (immutable like the usage log, INV-8; not billable, no limit counts them). */
  appendDownloads(downloads: readonly DownloadDraft[]): Promise<void>;
  /** Appends cancellations to the immutable cancellation log, in one statement (the event id is the key; the inbox makes each once). */
  appendCancellations(cancellations: readonly { eventId: string; userId: string; generationId: string; occurredAt: Date }[]): Promise<void>;
  /** Up to `limit` of a user's entries, newest first (occurred_at, then id), after `after` and at or after `since` when given. */
  page(userId: string, limit: number, after: UsageLogCursor | null, since?: Date | null): Promise<PagedUsageLogEntry[]>;
}

/** What a batch adds to one user's stats: the summed delta and the latest `occurred_at` among its entries. */
export interface UserStatsRowDelta {
  userId: string;
  delta: UserStatsDelta;
  lastActivityAt: Date;
}

/** Each user's lifetime stats, kept equal to the usage log (INV-6). */
export interface UserStatsStore {
  /**
   * Adds each row's delta to its user's stats in one statement (creating rows), so concurrent
   * batches never lose one; last activity only moves forward. At most one row per user (see
   * `sumStatsDeltas`); rows are locked in user id order (INV-9).
   */
  addMany(rows: readonly UserStatsRowDelta[]): Promise<void>;
  /** Adds `downloads` to each user's `totalDownloaded` (one row per user; creating rows; last activity does not move), in one upsert in user id order. */
  addDownloads(rows: readonly { userId: string; downloads: number }[]): Promise<void>;
  /** A user's stored stats, or null when the user has none yet. */
  find(userId: string): Promise<UserStats | null>;
  /**
   * Every user's (or one user's) stored stats beside the stats recomputed from the usage log
   * alone, read in ONE snapshot so events recorded meanwhile cannot show up as a difference.
   */
  besideUsageLog(userId?: string): Promise<StatsBesideUsageLog[]>;
}

/** Messages that can never be processed, kept raw so none is lost. */
export interface DeadLetterStore {
  add(letter: DeadLetter): Promise<void>;
}

/**
 * The subjects limits apply to. Every change to a subject's counters or reservations happens
 * under its row lock (held to the end of the transaction), so checks and moves serialise.
 */
export interface SubjectStore {
  /** Stores `subject`'s kind, plan and anchor (inserting it when new) and locks its row. */
  upsertAndLock(subject: Subject): Promise<StoredSubject>;
  /**
   * Locks the rows of `ids` in id order (INV-9: so two transactions never wait on each other in a
   * cycle), first creating a bare row (kind user, no plan or anchor) for an id never seen.
   */
  lockOrCreate(ids: readonly string[]): Promise<StoredSubject[]>;
  /** The subject's stored row, read without a lock; null when usage has none. */
  find(id: string): Promise<StoredSubject | null>;
  /** The stored rows of `ids` (those usage has), read without a lock. */
  findMany(ids: readonly string[]): Promise<StoredSubject[]>;
  /** Adds `delta` to the subject's active reservations. */
  addActiveReservations(id: string, delta: number): Promise<void>;
  /** `addActiveReservations` for several subjects (one delta per id), in one statement. */
  addActiveReservationsMany(deltas: readonly { id: string; delta: number }[]): Promise<void>;
  /** Marks a guest as adopted by `userId`. */
  markAdopted(guestId: string, userId: string): Promise<void>;
}

/** A counter row's key: its subject and window (a billing period or a UTC day). */
export interface CounterKey {
  subjectId: string;
  window: Window;
}

/** A counter row read by `readMany`: as stored, or (`stored` false) as it would be created. */
export interface StoredOrNew<Row> {
  row: Row;
  stored: boolean;
}

/** A counter row for `writeMany`: full values to insert (`created`), or deltas to add to the stored row. */
export interface CounterWrite<Row> {
  row: Row;
  created: boolean;
}

/** Per-period and per-day counters; callers hold the subject's lock. */
export interface UsageCounterStore {
  /**
   * The subject's counters in `period`, creating the row when missing with `used` counted from
   * the usage log for that window (so a new window, a re-anchoring or a subject first seen
   * late still starts exact) and `reserved` counted from the active reservations of that
   * period (none, except those a re-anchoring moved into it).
   */
  period(subjectId: string, period: Window): Promise<PeriodCounters>;
  /** The subject's counters on the UTC day `day`, created like `period` when missing. */
  day(subjectId: string, day: Window): Promise<DayCounters>;
  /** `period` and `day` together, in one round trip. */
  windows(subjectId: string, period: Window, day: Window): Promise<{ period: PeriodCounters; day: DayCounters }>;
  /**
   * `period` and `day` for many keys at once, WITHOUT writing (one statement per table, keys in
   * order): each row as stored (`stored` true), or, when missing, counted as `period` / `day`
   * would create it (used from the usage log, reserved from the active reservations). The caller
   * holds the subjects' locks and writes the rows with `writeMany` in the same transaction, so
   * nobody creates them in between; it must read before appending the entries it counts (INV-6).
   */
  readMany(periods: readonly CounterKey[], days: readonly CounterKey[]): Promise<{ periods: StoredOrNew<PeriodCounters>[]; days: StoredOrNew<DayCounters>[] }>;
  /**
   * Writes a batch's counter rows, one upsert per table in key order (INV-9), each key once: a
   * row read as missing (`created`) is inserted with `row` as its full values (counted from the
   * log plus the batch's moves); a stored row gets `row`'s counters added (the batch's deltas).
   * Throws (INV-6) when a row read as missing turns out stored or one read as stored is missing.
   */
  writeMany(periods: readonly CounterWrite<PeriodCounters>[], days: readonly CounterWrite<DayCounters>[]): Promise<void>;
  /** Adds `delta` to an existing period row (the caller got it through `period`). */
  addToPeriod(subjectId: string, periodStart: Date, delta: PeriodDelta): Promise<void>;
  /** Adds `delta` to an existing day row (the caller got it through `day`). */
  addToDay(subjectId: string, day: Date, delta: DayDelta): Promise<void>;
  /** Deletes every period row of the subject (derived data: rows are created again, counted from the usage log, when next read). */
  dropPeriods(subjectId: string): Promise<void>;
  /**
   * Every counter (of every subject, or of `subjectId`) that differs from what the usage log
   * and the active reservations say, read in ONE snapshot.
   */
  differences(subjectId?: string): Promise<CounterDifference[]>;
}

/** Quota reservations, one per generation id. */
export interface ReservationStore {
  find(generationId: string): Promise<Reservation | null>;
  /** The reservations of `generationIds` that exist (any status), by generation id. */
  findMany(generationIds: readonly string[]): Promise<Map<string, Reservation>>;
  /**
   * `end` for many reservations (one ending per generation id) in one statement: those still
   * active move to their status; answers the ones ended (a reservation no longer active is left).
   */
  endMany(endings: readonly { generationId: string; status: Exclude<ReservationStatus, "active"> }[], at: Date): Promise<Reservation[]>;
  insert(reservation: Reservation): Promise<void>;
  /**
   * Inserts `reservation` and, in the same statement, adds it to its period's and day's reserved
   * counters (rows the caller read through `counters.windows`) and its subject's active
   * reservations. False when a reservation for its generation id already exists (nothing moves).
   */
  reserve(reservation: Reservation): Promise<boolean>;
  /**
   * CheckAndReserve in one statement (its own transaction; call it outside one): locks the
   * subject (storing its kind, plan and anchor), answers an existing reservation of the
   * generation, and otherwise checks every limit in `limits` against the counters of the
   * request's windows and, when all allow it, inserts `reservation` and bumps the reserved
   * counters (INV-10). `setup_needed` when the subject has no row for the period or the day
   * yet, or its stored anchor is another (nothing reserved; the caller re-anchors or creates
   * the rows from the usage log and checks again).
   */
  checkAndReserve(reservation: Reservation, subject: Subject, limits: Partial<Record<LimitName, bigint>>): Promise<QuickReserveAnswer>;
  /** Moves an ACTIVE reservation to `status` at `at` and returns it; null when it is not active (already ended) or unknown. */
  end(generationId: string, status: Exclude<ReservationStatus, "active">, at: Date): Promise<Reservation | null>;
  /** Up to `limit` active reservations whose expiry is at or before `now`, soonest first. */
  due(now: Date, limit: number): Promise<Reservation[]>;
  /** The subject's active reservations. */
  activeOf(subjectId: string): Promise<Reservation[]>;
  /** Moves an active reservation to the billing period starting at `periodStart` (a re-anchored billing period). */
  movePeriod(generationId: string, periodStart: Date): Promise<void>;
}

/** A guest adopted by a user: the windows its usage moved from and into. */
export interface GuestAdoption {
  guestId: string;
  userId: string;
  /** The guest's period at adoption; null when the guest had no anchor. */
  guestPeriod: Window | null;
  /** The user's period the guest's usage moved into. */
  userPeriod: Window;
  /** The UTC day of the adoption (the guest's and the user's). */
  day: Date;
  generationsMoved: bigint;
  /** When the adoption happened (the service's clock). */
  adoptedAt: Date;
}

/** Guest adoptions, once per guest. */
export interface AdoptionStore {
  find(guestId: string): Promise<GuestAdoption | null>;
  insert(adoption: GuestAdoption): Promise<void>;
  /** The guests `userId` adopted. */
  adoptedBy(userId: string): Promise<GuestAdoption[]>;
  /** Moves the window the guest's usage counts in for its adopter (a re-anchored billing period). */
  moveUserPeriod(guestId: string, userPeriod: Window): Promise<void>;
}

/** Threshold crossings, each announced once (a unique row per subject, limit, threshold and window start). */
export interface ThresholdStore {
  /**
   * Records `crossing` and appends its UsageThresholdCrossed event to the outbox, in the caller's
   * transaction; false (nothing written) when that (subject, limit, threshold, window start) was
   * already crossed.
   */
  record(crossing: ThresholdCrossing): Promise<boolean>;
}

/** A subject's usage summary, read in one statement (GetUsageSummary). */
export interface UsageSummaryStore {
  /**
   * In ONE statement (one snapshot): the stored subject (null when usage does not know it), its
   * counters in `period` and `day` (a window without a counter row counted from the log as the
   * row would be created, nothing written), its stats (zeros without a row) and lifetime
   * detail, the totals of its entries in `period`, and its `recent` newest entries.
   */
  read(subjectId: string, period: Window, day: Window, recent: number): Promise<UsageSummaryRead>;
}

/** Monthly analytics per subject and UTC month, derived from the usage log (INV-6). */
export interface MonthlyAnalyticsStore {
  /**
   * Recomputes every month from the usage log, replacing what is stored; returns the rows
   * written. Safe while entries are recorded: writers wait for it and then add themselves.
   */
  rebuild(): Promise<number>;
  /** The months (of `subjectId`, or all) whose stored analytics differ from the usage log's. */
  differences(subjectId?: string): Promise<MonthlyAnalyticsDifference[]>;
  /** The subject's months from `from` to `to` (`YYYY-MM`, inclusive), newest first; months without usage are absent. */
  months(subjectId: string, from: string, to: string): Promise<MonthlyAnalytics[]>;
  /** The subject's lifetime beyond its stats row (LifetimeDetail), in one statement (one snapshot). */
  lifetime(subjectId: string): Promise<LifetimeDetail>;
}

/** The platform rollups (per UTC day; each subject's active days), derived from the usage log (INV-6). */
export interface PlatformRollupStore {
  /** Platform-wide figures of the entries in `window`, of `plan` only when given: whole UTC days from the rollups, partial days from the log. */
  platform(window: Window, plan: string | null): Promise<PlatformFigures>;
  /** Recomputes the rollups from the usage log, replacing what is stored; returns the rows written. Safe while entries are recorded. */
  rebuild(): Promise<number>;
  /** The rollup rows that differ from what the usage log gives; empty when they agree. */
  differences(): Promise<RollupDifference[]>;
}

/** One partition of the usage log as the maintenance created it. */
export interface CreatedUsageLogPartition {
  /** `usage_log_YYYY_MM`. */
  partition: string;
  /** Entries moved into it from the default partition (late or far-future entries recorded before it existed). */
  rowsMoved: bigint;
}

/** The usage log's monthly partitions (Migration20261128000001). */
export interface UsageLogPartitionStore {
  /**
   * Creates the partitions for the UTC month of `now`, the `aheadMonths` months after it and
   * every month with entries in the default partition (moving those entries, INV-8: no row is
   * updated or deleted); returns the partitions it created (none when all exist).
   */
  maintain(now: Date, aheadMonths: number): Promise<CreatedUsageLogPartition[]>;
  /** Every partition of the usage log with the entries it holds, by name (`usage_log_default` included). */
  list(): Promise<{ partition: string; entries: bigint }[]>;
}

/** Every store of the usage service, bound to one unit of work. */
/** Every table derived from the usage log, rebuilt at once (usage-admin `rebuild`). */
export interface DerivedTablesStore {
  /**
   * Rewrites user stats, the period and day counters (used from the log, reserved from the
   * active reservations), the subjects' active reservation counts and the monthly analytics
   * from their sources, in the caller's transaction, after locking those tables against
   * writers (who wait, then apply on top). Returns the rows written per table.
   */
  rebuild(): Promise<Omit<DerivedTablesRebuild, "platformRollups">>;
}

export interface UsageStores {
  inbox: InboxStore;
  usageLog: UsageLogStore;
  userStats: UserStatsStore;
  monthlyAnalytics: MonthlyAnalyticsStore;
  rollups: PlatformRollupStore;
  deadLetters: DeadLetterStore;
  subjects: SubjectStore;
  counters: UsageCounterStore;
  reservations: ReservationStore;
  adoptions: AdoptionStore;
  thresholds: ThresholdStore;
  partitions: UsageLogPartitionStore;
  derivedTables: DerivedTablesStore;
  summaries: UsageSummaryStore;
  /** Events waiting for the outbox relay (platform OutboxStore on `outbox`). */
  outbox: OutboxStore;
}

export type UsageUnitOfWork = UnitOfWork<UsageStores>;

/** What ReservationStore.checkAndReserve found and did. */
export type QuickReserveAnswer =
  | { outcome: "existing"; reservation: Reservation }
  | { outcome: "setup_needed" }
  /** The counters are as they were before this call (the reservation is not in them). */
  | { outcome: "reserved" | "refused"; reservation: Reservation | null; period: PeriodCounters; day: DayCounters; activeReservations: number };

import type { UnitOfWork } from "@tally/platform";
import type { UsageLogCursor } from "./usage-log-cursor";
import type {
  DeadLetter,
  PagedUsageLogEntry,
  StatsBesideUsageLog,
  UsageLogEntry,
  UsageLogEntryDraft,
  UserStats,
  UserStatsDelta,
} from "./types";

/*
 * The stores the usage rules need, in domain terms. The adapter implements them in SQL
 * (adapter/*-store.ts) bound to one transaction or connection scope of a UsageUnitOfWork.
 */

/** The consumer's inbox: the event ids already recorded (INV-5). */
export interface InboxStore {
  /**
   * Records `eventId` as processed; false when it already was (a duplicate: record nothing).
   * Concurrent claims of one id wait on each other until the first commits, so exactly one wins.
   */
  claim(eventId: string, subject: string): Promise<boolean>;
}

/** The usage log: append-only (INV-8), never updated or deleted. */
export interface UsageLogStore {
  /** Appends one entry with id `id` and returns it as stored. */
  append(id: string, draft: UsageLogEntryDraft): Promise<UsageLogEntry>;
  /** Up to `limit` of a user's entries, newest first (occurred_at, then id), after `after` when given. */
  page(userId: string, limit: number, after: UsageLogCursor | null): Promise<PagedUsageLogEntry[]>;
}

/** Each user's lifetime stats, kept equal to the usage log (INV-6). */
export interface UserStatsStore {
  /** Adds `delta` in one statement so concurrent events for one user never lose one; last activity only moves forward. */
  add(userId: string, delta: UserStatsDelta, occurredAt: Date): Promise<void>;
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

/** Every store of the usage service, bound to one unit of work. */
export interface UsageStores {
  inbox: InboxStore;
  usageLog: UsageLogStore;
  userStats: UserStatsStore;
  deadLetters: DeadLetterStore;
}

export type UsageUnitOfWork = UnitOfWork<UsageStores>;

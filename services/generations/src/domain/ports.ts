import type { IdempotencyStore, UnitOfWork } from "@tally/platform";
import type { ClaimedJob, Download, GenerationOutput, GenerationRecord, JobEnding, JobOutcome, NewGeneration, Settlement } from "./types";

/**
 * The generations the rules need, bound to one transaction or to none (see
 * GenerationsUnitOfWork). Times that decide leases come from the database clock, so replicas
 * with skewed clocks agree.
 */
export interface GenerationStore {
  /** Inserts a `pending` generation and returns it. */
  insert(generation: NewGeneration): Promise<GenerationRecord>;
  /**
   * Locks the row of generation `id` (`FOR UPDATE`) until the caller's transaction ends: a
   * retry locks its job's original so that free retries of one job are counted and taken one
   * at a time. False when there is no such row.
   */
  lock(id: string): Promise<boolean>;
  /** How many free retries the job of original `rootId` has started (one indexed count). */
  countFreeRetries(rootId: string): Promise<number>;
  /** A generation by id, or null. */
  find(id: string): Promise<GenerationRecord | null>;
  /** The generation `id` of `userId`, or null (also for another user's generation, INV-7). */
  findOfUser(userId: string, id: string): Promise<GenerationRecord | null>;
  /** One page of the user's generations, newest first, and how many they have in all. */
  listOfUser(userId: string, limit: number, offset: number): Promise<{ generations: GenerationRecord[]; totalSize: number }>;
  /** The stored output of a completed generation of `userId`, or null. */
  findOutputOfUser(userId: string, id: string): Promise<GenerationOutput | null>;
  /** The size in bytes of the stored output of generation `id` (0 when it has none). */
  outputBytes(id: string): Promise<bigint>;
  /** The size in bytes of the stored output of a completed generation of `userId`, or null when there is none. */
  outputBytesOfUser(userId: string, id: string): Promise<bigint | null>;
  /**
   * Cancels a pending or processing generation whose ending has not started (no settlement):
   * locks the row, asks `decide` for the settlement of cancelling it now (refund rules), and
   * stores status `cancelled` with that settlement. The lease (`leaseMs`) lets the worker's
   * sweep redo the capture/release only if the caller dies before doing it. Null when no such
   * row exists.
   */
  cancel(userId: string, id: string, leaseMs: number, decide: (record: GenerationRecord) => Settlement): Promise<GenerationRecord | null>;
  /** True once the generation's hold was captured or released (settled_at set). */
  isSettled(id: string): Promise<boolean>;
  /**
   * Records that a cancelled generation's hold was settled; `uncharged` when credits refused
   * the capture its settlement decided (the hold had ended): nothing was captured.
   */
  markCancelSettled(id: string, uncharged: boolean): Promise<void>;
  /**
   * Claims up to `count` jobs for one worker and leases them for `leaseMs` under `leaseToken`
   * (pending ones become `processing` with `providerName`; processing ones whose lease ran
   * out and cancelled ones whose release was never confirmed keep their status). Replicas
   * never claim the same row at once (`FOR UPDATE SKIP LOCKED`).
   */
  claimJobs(count: number, leaseMs: number, leaseToken: string, providerName: string): Promise<ClaimedJob[]>;
  /**
   * Extends the lease of a processing job this claim still holds, optionally with its
   * progress (0..100) and the provider's measured spend so far (micro-units; kept at its
   * highest). False when the job is no longer this claim's to run (cancelled or reclaimed).
   */
  renewLease(id: string, leaseToken: string, leaseMs: number, progressPercent?: number, spentMicros?: bigint): Promise<boolean>;
  /** Lets another worker reclaim a job at once (a worker abandoning it at shutdown). */
  expireLease(id: string, leaseToken: string): Promise<void>;
  /**
   * Step 1 of ending a job: stores the outcome and the settlement it decided (and a completed
   * job's output), only while the job is processing under this claim with no settlement. False
   * when it is not (cancelled or reclaimed meanwhile).
   */
  recordOutcome(id: string, leaseToken: string, outcome: JobOutcome, settlement: Settlement): Promise<boolean>;
  /**
   * Step 3 of ending a job, after credits captured or released its hold: only a processing
   * job with an unsettled settlement moves (so two workers finish it once). Returns it, or
   * null when another worker finished it first. A failed job keeps no output.
   */
  finishJob(id: string, ending: JobEnding): Promise<GenerationRecord | null>;
  /** Gives every generation of `fromUserId` to `toUserId`; returns how many moved. */
  moveToUser(fromUserId: string, toUserId: string): Promise<number>;
  /**
   * Erases the personal data of every generation of `userId` (prompt, photo URL, address,
   * style, stored output, and the stored idempotent answers that carry them), keeping ids, statuses, credits, costs and timestamps; marks them
   * `erased_at`. Returns how many generations were erased now (0 when none or all were before).
   */
  eraseUser(userId: string): Promise<number>;
}

/** The inbox of consumed events (INV-5, consumer half). */
export interface InboxStore {
  /** Records an event id in the caller's transaction: true the first time, false for a duplicate. */
  claim(eventId: string, subject: string): Promise<boolean>;
}

// The transactional outbox's types are the platform's (packages/platform/src/outbox.ts), shared
// with every producing service; re-exported so the rest of this service names them from here.
export type { EncodedEvent, EventPublisher, OutboxMessage, OutboxStore, PublishResult } from "@tally/platform";
import type { EncodedEvent, OutboxStore } from "@tally/platform";

/** Every store of the generations service, bound to one transaction (or to none). */
export interface GenerationsStores {
  generations: GenerationStore;
  outbox: OutboxStore;
  inbox: InboxStore;
  idempotency: IdempotencyStore;
}

export type GenerationsUnitOfWork = UnitOfWork<GenerationsStores>;

/** What the generations service needs to know about a hold. */
export interface HoldView {
  id: string;
  /** Credits held. */
  amount: bigint;
  /** Of amount, credits from trial grants. */
  trialAmount: bigint;
  /** Of amount, credits from purchased and promotional grants. */
  tokenAmount: bigint;
  capturedAmount: bigint;
  /** When the hold expires unless extended. */
  expiresAt: Date;
}

/** Whether an account is a signed-up user or a guest (its limits answer with a different reason). */
export type AccountKindName = "user" | "guest";

/** What the generations service needs to know about an account to check its limits. */
export interface AccountView {
  id: string;
  kind: AccountKindName;
  /** The plan's name in the plan catalogue (PLANS_FILE). */
  plan: string;
  /** The billing anchor: billing periods are monthly from it (UTC). */
  periodAnchor: Date;
}

/**
 * The credits service as the generations service uses it (hold, capture, release). Every
 * call is idempotent by its request_id, so redoing one after a crash or timeout is safe.
 * Calls reject with DomainErrors carrying credits' reasons.
 */
export interface CreditsPort {
  /** The account a generation is made for: its kind, plan and billing anchor. Errors: `not_found`. */
  getAccount(accountId: string): Promise<AccountView>;
  createHold(request: { requestId: string; accountId: string; generationId: string; amount: bigint; ttlMs: number }): Promise<HoldView>;
  /** Charges `amount` credits of the hold (all of it when unset) and releases the rest. */
  captureHold(request: { requestId: string; holdId: string; amount?: bigint }): Promise<HoldView>;
  releaseHold(request: { requestId: string; holdId: string; reason: string }): Promise<HoldView>;
  /** Moves an active hold's deadline to now + `ttlMs` (0: credits' HOLD_TTL_MS) when later. Errors: `hold_not_active`, `not_found`. */
  extendHold(request: { requestId: string; holdId: string; ttlMs: number }): Promise<HoldView>;
}

/**
 * Request ids of the credits calls for one generation, derived from its id so that any retry,
 * by any worker, repeats the same call (INV-3: one hold per generation, captured or released once).
 */
export const holdRequestIds = (generationId: string) => ({
  create: `hold:${generationId}`,
  capture: `capture:${generationId}`,
  release: `release:${generationId}`,
});

/** Whom limits apply to, as the usage service needs it: the account's id, kind, plan and billing anchor. */
export type LimitSubject = AccountView;

/** Lifecycle of a quota reservation at the usage service. */
export type ReservationStatusName = "active" | "consumed" | "released" | "expired";

/** What the generations service needs to know about a quota reservation. */
export interface ReservationView {
  generationId: string;
  status: ReservationStatusName;
  /** Credits reserved against credits_per_period. */
  credits: bigint;
}

/**
 * The usage service as the generations service uses it: quota reservations, keyed by the
 * generation id. Calls reject with DomainErrors carrying usage's reasons and details
 * (`plan_limit_exceeded`, `guest_limit_exceeded`, `validation`, `unavailable`).
 */
export interface UsagePort {
  /**
   * Checks every limit of the subject's plan for one more generation costing `credits` and
   * reserves quota for it. Idempotent on `generationId`: a retry answers the existing
   * reservation (whatever its status) and reserves nothing more. An active reservation whose
   * job never ends expires at usage (RESERVATION_TTL_MS).
   */
  checkAndReserve(subject: LimitSubject, generationId: string, credits: bigint): Promise<ReservationView>;
  /** Gives back an active reservation whose job was never stored; one that already ended stays as it is. */
  releaseReservation(generationId: string, reason: string): Promise<ReservationView | null>;
}

/** Turns a generation's ending into an event for the outbox (an adapter encodes the contract's message). */
export interface EventEncoder {
  /**
   * The GenerationCompleted or GenerationFailed event of a finished generation; `outputBytes`
   * is the size of its stored output (0 for a failure). The event carries the generation's
   * billing classification, reason and parent (a free retry's credits are 0).
   */
  generationEnded(generation: GenerationRecord, occurredAt: Date, outputBytes: bigint): EncodedEvent;
  /** The GenerationDownloaded event of one download request. */
  generationDownloaded(download: Download, occurredAt: Date): EncodedEvent;
  /** The GenerationCancelled event of a cancelled generation. */
  generationCancelled(generation: GenerationRecord, occurredAt: Date): EncodedEvent;
}

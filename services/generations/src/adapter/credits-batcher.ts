import { DomainError, ERROR_REASONS, type ErrorReason } from "@tally/platform";
import type { credits } from "@tally/contracts";

/** Most members of one batch call that CREDITS_BATCH_MAX_OPERATIONS allows (the credits service accepts up to 1000). */
export const BATCH_OPERATIONS_LIMIT = 1000;

/** How one kind of hold call (CreateHold, CaptureHold or ReleaseHold) reaches credits. */
export interface CreditsCallSenders<Request> {
  /** The unary call (CreateHold, ...): the hold, or rejects with the call's DomainError. */
  one(request: Request, timeoutMs: number): Promise<credits.Hold | undefined>;
  /** The batch call (BatchCreateHolds, ...): one result per request, in order; rejects when the whole call fails. */
  many(requests: Request[], timeoutMs: number): Promise<credits.HoldResult[]>;
}

/** CREDITS_BATCH_MAX_OPERATIONS, CREDITS_BATCH_WINDOW_MS and DOWNSTREAM_TIMEOUT_MS. */
export interface CreditsBatchOptions {
  /** Most members of one batch call; 1: every call goes unary, on its own. */
  maxOperations: number;
  /** Extra wait, in milliseconds (0 or 1), after a call in flight returns before the calls queued behind it go; 0: at once. */
  windowMs: number;
  /** Deadline of each caller's call, in milliseconds from when it was made (queueing included). */
  timeoutMs: number;
}

/** What one batcher has sent since it was made: counts only ever grow (read by the `/metrics` gauges). */
export interface CreditsCallCounts {
  /** Calls callers made (each answered on its own). */
  operations: number;
  /** Unary calls sent to credits. */
  unaryCalls: number;
  /** Batch calls sent to credits. */
  batchCalls: number;
  /** Members of those batch calls (operations − unaryCalls, once everything has gone). */
  batchMembers: number;
}

/** A caller waiting for its call to go. */
interface Waiting<Request> {
  request: Request;
  /** When the caller's deadline passes (Date.now() clock), in milliseconds. */
  deadlineAt: number;
  /** Rejects the caller with `deadline_exceeded` at its deadline, whether it is queued or in a batch call. */
  timer: NodeJS.Timeout;
  settled: boolean;
  resolve(hold: credits.Hold | undefined): void;
  reject(error: unknown): void;
}

/**
 * Adaptive batching of one kind of hold call to credits, the rule of credits' own group
 * commit: a call made while nothing of its kind is in flight goes at once, unary (a lone
 * caller waits for no timer and no other caller); calls made while one is in flight queue and
 * go as ONE batch call (BatchCreateHolds, BatchCaptureHolds, BatchReleaseHolds; at most
 * `maxOperations` members, a full batch goes at once) when a call in flight returns, after
 * `windowMs` more when that is set. A queue of one goes unary.
 *
 * Each caller gets what its unary call would have answered: its hold, or a DomainError with the
 * member's own reason, message and details (insufficient_credits with requested/available, so
 * one member short of credits fails alone). A failure of the whole batch call (`unavailable`,
 * `deadline_exceeded`) rejects each member with it; each member is idempotent by its own
 * request id (INV-4), so the caller's retry is safe. Each caller keeps its own deadline
 * (`timeoutMs` from its call): past it, it is rejected `deadline_exceeded` (and dropped from
 * the queue if still there) while the others go on; the batch call's deadline is the latest
 * of its members'.
 */
export class CreditsCallBatcher<Request> {
  readonly counts: CreditsCallCounts = { operations: 0, unaryCalls: 0, batchCalls: 0, batchMembers: 0 };
  private waiting: Waiting<Request>[] = [];
  private inFlight = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly senders: CreditsCallSenders<Request>,
    private readonly options: CreditsBatchOptions,
  ) {}

  /** Sends `request` (at once, or in the next batch call) and answers its hold, or rejects with its own error. */
  submit(request: Request): Promise<credits.Hold | undefined> {
    this.counts.operations++;
    if (this.options.maxOperations <= 1 || (this.inFlight === 0 && this.waiting.length === 0)) {
      return this.track(this.sendOne(request, this.options.timeoutMs));
    }
    return new Promise((resolve, reject) => {
      const deadlineAt = Date.now() + this.options.timeoutMs;
      const member: Waiting<Request> = { request, deadlineAt, settled: false, resolve, reject, timer: undefined as unknown as NodeJS.Timeout };
      member.timer = setTimeout(() => this.expire(member), this.options.timeoutMs).unref();
      this.waiting.push(member);
      if (this.waiting.length >= this.options.maxOperations) this.flush();
    });
  }

  private sendOne(request: Request, timeoutMs: number): Promise<credits.Hold | undefined> {
    this.counts.unaryCalls++;
    return this.senders.one(request, timeoutMs);
  }

  /** Counts `call` as in flight; when it returns, what queued behind it goes. */
  private track<T>(call: Promise<T>): Promise<T> {
    this.inFlight++;
    return call.finally(() => {
      this.inFlight--;
      if (this.waiting.length === 0) return;
      if (this.options.windowMs > 0) this.timer ??= setTimeout(() => this.flush(), this.options.windowMs);
      else this.flush();
    });
  }

  /** Sends everything queued now, in batch calls of at most `maxOperations` members. */
  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.waiting.length > 0) this.send(this.waiting.splice(0, this.options.maxOperations));
  }

  private send(batch: Waiting<Request>[]): void {
    const timeoutMs = Math.max(1, Math.max(...batch.map((member) => member.deadlineAt)) - Date.now());
    if (batch.length === 1) {
      const [only] = batch as [Waiting<Request>];
      this.track(this.sendOne(only.request, timeoutMs)).then(
        (hold) => answer(only, () => only.resolve(hold)),
        (error: unknown) => answer(only, () => only.reject(error)),
      );
      return;
    }
    this.counts.batchCalls++;
    this.counts.batchMembers += batch.length;
    this.track(this.senders.many(batch.map((member) => member.request), timeoutMs)).then(
      (results) => batch.forEach((member, index) => answer(member, () => settle(member, results[index]))),
      (error: unknown) => batch.forEach((member) => answer(member, () => member.reject(error))),
    );
  }

  /** The caller's deadline passed: it leaves the queue (if still there) and is rejected; the others go on. */
  private expire(member: Waiting<Request>): void {
    const index = this.waiting.indexOf(member);
    if (index >= 0) this.waiting.splice(index, 1);
    answer(member, () => member.reject(new DomainError("deadline_exceeded", `credits did not answer within ${this.options.timeoutMs} ms`)));
  }
}

/** Answers a member once (its deadline may have answered it already) and stops its deadline timer. */
function answer<Request>(member: Waiting<Request>, settleIt: () => void): void {
  clearTimeout(member.timer);
  if (member.settled) return;
  member.settled = true;
  settleIt();
}

/** One member's result: its hold, or the DomainError its unary call would have thrown. */
function settle<Request>(member: Waiting<Request>, result: credits.HoldResult | undefined): void {
  if (result?.ok) return member.resolve(result.ok.hold);
  const error = result?.error;
  if (!error) return member.reject(new DomainError("internal", "credits answered a batch call without this member's result"));
  const reason: ErrorReason = error.reason in ERROR_REASONS ? (error.reason as ErrorReason) : "internal";
  let details: Record<string, unknown> = {};
  try {
    details = JSON.parse(error.detailsJson || "{}") as Record<string, unknown>;
  } catch {
    details = {};
  }
  member.reject(new DomainError(reason, error.message, details));
}

import { DomainError, ERROR_REASONS, type ErrorReason } from "@tally/platform";
import type { credits } from "@tally/contracts";

/** A call waiting for its batch. */
interface Waiting<Request> {
  request: Request;
  resolve(hold: credits.Hold | undefined): void;
  reject(error: unknown): void;
}

/** Most members of one batch call (the credits service accepts up to 1000). */
export const COALESCE_OPERATIONS_MAX = 64;

/**
 * A client-side coalescer for settlements (CREDITS_SETTLE_COALESCE_WINDOW_MS): capture or
 * release calls made within `windowMs` of the first one of a batch (at most
 * COALESCE_OPERATIONS_MAX) go to credits as ONE BatchCaptureHolds or BatchReleaseHolds call,
 * which credits applies in one transaction; each caller gets its own member's hold or its
 * DomainError, the same as the unary call would have answered. A failure of the whole call
 * (`unavailable`, a deadline) rejects every member with it; each member is idempotent by its
 * own request id, so the caller's retry is safe.
 */
export class SettlementCoalescer<Request> {
  private waiting: Waiting<Request>[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** Sends one batch call; one result per request, in order. */
    private readonly send: (requests: Request[]) => Promise<credits.HoldResult[]>,
    private readonly windowMs: number,
  ) {}

  /** Joins the next batch and answers the member's hold (or rejects with its error) once the batch call returns. */
  submit(request: Request): Promise<credits.Hold | undefined> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ request, resolve, reject });
      if (this.waiting.length >= COALESCE_OPERATIONS_MAX) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.windowMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.waiting;
    this.waiting = [];
    if (batch.length === 0) return;
    this.send(batch.map((member) => member.request)).then(
      (results) => batch.forEach((member, index) => settle(member, results[index])),
      (error: unknown) => batch.forEach((member) => member.reject(error)),
    );
  }
}

function settle<Request>(member: Waiting<Request>, result: credits.HoldResult | undefined): void {
  if (result?.ok) return member.resolve(result.ok.hold);
  const error = result?.error;
  if (!error) return member.reject(new Error("credits answered a batch call without this member's result"));
  const reason: ErrorReason = error.reason in ERROR_REASONS ? (error.reason as ErrorReason) : "internal";
  let details: Record<string, unknown> = {};
  try {
    details = JSON.parse(error.detailsJson || "{}") as Record<string, unknown>;
  } catch {
    details = {};
  }
  member.reject(new DomainError(reason, error.message, details));
}

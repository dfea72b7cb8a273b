import * as grpc from "@grpc/grpc-js";

/**
 * Stable error reasons (docs/errors.md). They travel in the `tally-error-reason` trailer
 * and map once to a gRPC code here and once to HTTP in the gateway.
 */
export const ERROR_REASONS = {
  validation: grpc.status.INVALID_ARGUMENT,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  insufficient_credits: grpc.status.FAILED_PRECONDITION,
  plan_limit_exceeded: grpc.status.PERMISSION_DENIED,
  forbidden: grpc.status.PERMISSION_DENIED,
  not_found: grpc.status.NOT_FOUND,
  conflict: grpc.status.ALREADY_EXISTS,
  idempotency_key_reused: grpc.status.ABORTED,
  already_finished: grpc.status.ABORTED,
  generation_not_retryable: grpc.status.ABORTED,
  hold_not_active: grpc.status.ABORTED,
  rate_limited: grpc.status.RESOURCE_EXHAUSTED,
  guest_limit_exceeded: grpc.status.RESOURCE_EXHAUSTED,
  unavailable: grpc.status.UNAVAILABLE,
  deadline_exceeded: grpc.status.DEADLINE_EXCEEDED,
  internal: grpc.status.INTERNAL,
} as const satisfies Record<string, grpc.status>;

export type ErrorReason = keyof typeof ERROR_REASONS;

export const REASON_METADATA_KEY = "tally-error-reason";
export const DETAILS_METADATA_KEY = "tally-error-details";

/**
 * An expected error of the domain: a stable `reason`, a message for people and optional
 * structured details (e.g. which limit, the plan, current usage). Services throw these and
 * never transport errors.
 */
export class DomainError extends Error {
  constructor(
    readonly reason: ErrorReason,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "DomainError";
  }
}

/** Shorthand for `new DomainError("validation", message, details)`. */
export const validationError = (message: string, details: Record<string, unknown> = {}) =>
  new DomainError("validation", message, details);

/** Shorthand for `new DomainError("not_found", message)`. */
export const notFound = (message: string) => new DomainError("not_found", message);

/**
 * Turns any thrown value into a gRPC error for a handler's callback. A DomainError keeps its
 * reason and details in trailers; anything else is a bug and becomes INTERNAL without leaking
 * its message.
 */
export function toServiceError(error: unknown): Partial<grpc.ServiceError> {
  const metadata = new grpc.Metadata();
  if (error instanceof DomainError) {
    metadata.set(REASON_METADATA_KEY, error.reason);
    metadata.set(DETAILS_METADATA_KEY, JSON.stringify(error.details, bigintToString));
    return { code: ERROR_REASONS[error.reason], details: error.message, metadata };
  }
  metadata.set(REASON_METADATA_KEY, "internal");
  return { code: grpc.status.INTERNAL, details: "internal error", metadata };
}

const CODE_TO_REASON: Partial<Record<grpc.status, ErrorReason>> = {
  [grpc.status.INVALID_ARGUMENT]: "validation",
  [grpc.status.UNAUTHENTICATED]: "unauthenticated",
  // Without a reason trailer these come from the transport (e.g. a message over the size
  // limit), not from a callee's rule: they are server faults, not the caller's.
  [grpc.status.FAILED_PRECONDITION]: "internal",
  [grpc.status.PERMISSION_DENIED]: "forbidden",
  [grpc.status.NOT_FOUND]: "not_found",
  [grpc.status.ALREADY_EXISTS]: "conflict",
  [grpc.status.ABORTED]: "conflict",
  [grpc.status.RESOURCE_EXHAUSTED]: "internal",
  [grpc.status.UNAVAILABLE]: "unavailable",
  [grpc.status.DEADLINE_EXCEEDED]: "deadline_exceeded",
  [grpc.status.CANCELLED]: "unavailable",
};

/**
 * Turns a gRPC client error back into a DomainError, so a service calling another sees the
 * same reasons the callee threw (e.g. `insufficient_credits` from credits reaches the gateway
 * through generations unchanged).
 */
export function fromServiceError(error: grpc.ServiceError): DomainError {
  const reasonValue = error.metadata?.get(REASON_METADATA_KEY)?.[0]?.toString();
  const reason: ErrorReason =
    reasonValue && reasonValue in ERROR_REASONS ? (reasonValue as ErrorReason) : (CODE_TO_REASON[error.code] ?? "internal");
  let details: Record<string, unknown> = {};
  const detailsValue = error.metadata?.get(DETAILS_METADATA_KEY)?.[0]?.toString();
  if (detailsValue) {
    try {
      details = JSON.parse(detailsValue) as Record<string, unknown>;
    } catch {
      details = {};
    }
  }
  return new DomainError(reason, error.details || error.message, details);
}

function bigintToString(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

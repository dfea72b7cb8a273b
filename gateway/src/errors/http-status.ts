import * as grpc from "@grpc/grpc-js";
import { ERROR_REASONS, type ErrorReason } from "@tally/platform/src/stateless";

/**
 * The one place where gRPC status codes become HTTP status codes (docs/errors.md gives the
 * whole chain reason → gRPC → HTTP). FAILED_PRECONDITION is 402 because the only precondition
 * a client can fail is having enough credits; the codes no reason uses follow Google's HTTP
 * mapping (google.rpc.Code).
 */
export const GRPC_STATUS_TO_HTTP: Readonly<Record<grpc.status, number>> = {
  [grpc.status.OK]: 200,
  [grpc.status.CANCELLED]: 499,
  [grpc.status.UNKNOWN]: 500,
  [grpc.status.INVALID_ARGUMENT]: 400,
  [grpc.status.DEADLINE_EXCEEDED]: 504,
  [grpc.status.NOT_FOUND]: 404,
  [grpc.status.ALREADY_EXISTS]: 409,
  [grpc.status.PERMISSION_DENIED]: 403,
  [grpc.status.RESOURCE_EXHAUSTED]: 429,
  [grpc.status.FAILED_PRECONDITION]: 402,
  [grpc.status.ABORTED]: 409,
  [grpc.status.OUT_OF_RANGE]: 400,
  [grpc.status.UNIMPLEMENTED]: 501,
  [grpc.status.INTERNAL]: 500,
  [grpc.status.UNAVAILABLE]: 503,
  [grpc.status.DATA_LOSS]: 500,
  [grpc.status.UNAUTHENTICATED]: 401,
};

/**
 * HTTP status for a domain reason: the reason's gRPC code (platform's ERROR_REASONS, the same
 * table the services use) through GRPC_STATUS_TO_HTTP. Unknown reasons are a bug → 500.
 */
export function httpStatusForReason(reason: string): number {
  const code = (ERROR_REASONS as Record<string, grpc.status | undefined>)[reason];
  return code === undefined ? 500 : GRPC_STATUS_TO_HTTP[code];
}

/**
 * Reasons the gateway itself answers with, beyond the domain's: HTTP-only concerns, raised by
 * Fastify (body, media type, URL) or by Node's HTTP parser before any route runs.
 */
export const GATEWAY_REASONS = {
  payload_too_large: 413,
  unsupported_media_type: 415,
  method_not_allowed: 405,
  /** Not well-formed HTTP/1.1 (the parser refuses it: a control character in a header, a bad request line, no Host). */
  bad_request: 400,
  /** The path is not valid percent-encoded UTF-8 (e.g. `%ZZ`). */
  bad_url: 400,
  /** The request's head did not arrive in time. */
  request_timeout: 408,
  /** A path segment is longer than any route accepts. */
  uri_too_long: 414,
  /** An `Expect` header other than `100-continue`. */
  expectation_failed: 417,
  /** The request line and headers together exceed the server's limit (16 KiB). */
  header_fields_too_large: 431,
} as const;

export type GatewayReason = keyof typeof GATEWAY_REASONS;

/** Every `code` a problem document can carry. */
export type ProblemCode = ErrorReason | GatewayReason;

/** Short human titles per code (RFC 9457 `title`: the same for every occurrence of a type). */
export const PROBLEM_TITLES: Readonly<Record<ProblemCode, string>> = {
  validation: "Invalid request",
  unauthenticated: "Authentication required",
  insufficient_credits: "Insufficient credits",
  plan_limit_exceeded: "Plan limit exceeded",
  forbidden: "Forbidden",
  not_found: "Not found",
  conflict: "Conflict",
  idempotency_key_reused: "Idempotency key reused",
  already_finished: "Generation already finished",
  generation_not_retryable: "Generation not retryable",
  hold_not_active: "Hold not active",
  rate_limited: "Too many requests",
  guest_limit_exceeded: "Guest limit exceeded",
  unavailable: "Service unavailable",
  deadline_exceeded: "Upstream timeout",
  internal: "Internal server error",
  payload_too_large: "Payload too large",
  unsupported_media_type: "Unsupported media type",
  method_not_allowed: "Method not allowed",
  bad_request: "Malformed request",
  bad_url: "Malformed URL",
  request_timeout: "Request timeout",
  uri_too_long: "URI too long",
  expectation_failed: "Expectation failed",
  header_fields_too_large: "Request header fields too large",
};

/** HTTP status for any problem code. */
export function httpStatusForCode(code: ProblemCode): number {
  return code in GATEWAY_REASONS ? GATEWAY_REASONS[code as GatewayReason] : httpStatusForReason(code);
}

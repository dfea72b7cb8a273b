import * as grpc from "@grpc/grpc-js";
import { ERROR_REASONS } from "@tally/platform/src/stateless";
import { GRPC_STATUS_TO_HTTP, httpStatusForCode, httpStatusForReason, PROBLEM_TITLES } from "./http-status";

describe("gRPC → HTTP mapping (docs/errors.md)", () => {
  const expected: Record<string, number> = {
    OK: 200,
    CANCELLED: 499,
    UNKNOWN: 500,
    INVALID_ARGUMENT: 400,
    DEADLINE_EXCEEDED: 504,
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    PERMISSION_DENIED: 403,
    RESOURCE_EXHAUSTED: 429,
    FAILED_PRECONDITION: 402,
    ABORTED: 409,
    OUT_OF_RANGE: 400,
    UNIMPLEMENTED: 501,
    INTERNAL: 500,
    UNAVAILABLE: 503,
    DATA_LOSS: 500,
    UNAUTHENTICATED: 401,
  };

  it.each(Object.entries(expected))("maps %s to %i", (name, status) => {
    const code = grpc.status[name as keyof typeof grpc.status];
    expect(code).toBeDefined();
    expect(GRPC_STATUS_TO_HTTP[code]).toBe(status);
  });

  it("covers every gRPC status code", () => {
    const codes = Object.values(grpc.status).filter((value): value is number => typeof value === "number");
    expect(codes).toHaveLength(17);
    for (const code of codes) expect(GRPC_STATUS_TO_HTTP[code as grpc.status]).toEqual(expect.any(Number));
  });

  it("maps every domain reason to the status docs/errors.md gives it", () => {
    const byReason: Record<keyof typeof ERROR_REASONS, number> = {
      validation: 400,
      unauthenticated: 401,
      insufficient_credits: 402,
      plan_limit_exceeded: 403,
      forbidden: 403,
      not_found: 404,
      conflict: 409,
      idempotency_key_reused: 409,
      already_finished: 409,
      generation_not_retryable: 409,
      hold_not_active: 409,
      rate_limited: 429,
      guest_limit_exceeded: 429,
      unavailable: 503,
      deadline_exceeded: 504,
      internal: 500,
    };
    expect(Object.keys(byReason).sort()).toEqual(Object.keys(ERROR_REASONS).sort());
    for (const [reason, status] of Object.entries(byReason)) expect([reason, httpStatusForReason(reason)]).toEqual([reason, status]);
  });

  it("treats an unknown reason as a bug (500) and maps the gateway's own codes", () => {
    expect(httpStatusForReason("no_such_reason")).toBe(500);
    expect(httpStatusForCode("payload_too_large")).toBe(413);
    expect(httpStatusForCode("unsupported_media_type")).toBe(415);
    expect(httpStatusForCode("insufficient_credits")).toBe(402);
  });
});

describe("the gateway's own codes (HTTP-only concerns)", () => {
  it("maps the codes of requests refused before any route runs, each with a title", () => {
    const byCode = {
      bad_request: 400,
      bad_url: 400,
      request_timeout: 408,
      uri_too_long: 414,
      expectation_failed: 417,
      header_fields_too_large: 431,
      method_not_allowed: 405,
    } as const;
    for (const [code, status] of Object.entries(byCode)) {
      expect([code, httpStatusForCode(code as keyof typeof byCode)]).toEqual([code, status]);
      expect(PROBLEM_TITLES[code as keyof typeof byCode]).toEqual(expect.any(String));
    }
  });
});

import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from "fastify-type-provider-zod";
import { DomainError, type Logger } from "@tally/platform";
import { BEARER_CHALLENGE } from "../auth/authenticate";
import { traceIdOf } from "../tracing";
import { httpStatusForCode, PROBLEM_TITLES, type ProblemCode } from "./http-status";

export const PROBLEM_CONTENT_TYPE = "application/problem+json; charset=utf-8";

/** An RFC 9457 problem document as the gateway sends it. */
export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** The stable reason (a domain reason of docs/errors.md, or a gateway reason such as `payload_too_large`). */
  code: ProblemCode;
  instance?: string;
  trace_id?: string;
  [extension: string]: unknown;
}

/** What a client is told about failures on our side (their real messages go to the log). */
const SERVER_FAILURE_DETAILS: Partial<Record<ProblemCode, string>> = {
  unavailable: "a service this request needs is unavailable; try again later",
  deadline_exceeded: "a service this request needs did not answer in time; try again later",
  internal: "internal error",
};

/** Members a domain error's details may not overwrite. */
const RESERVED_MEMBERS = new Set(["type", "title", "status", "detail", "code", "instance", "trace_id"]);

/**
 * Domain details that are internal and never reach a client: `request_id` is the gateway's
 * derived idempotency id (e.g. in `idempotency_key_reused`), which the client never sent.
 */
const INTERNAL_MEMBERS = new Set(["request_id"]);

const INTEGER_STRING = /^-?\d+$/;

/**
 * Domain details as problem extension members. int64 values cross gRPC trailers as decimal
 * strings (JSON has no bigint), so integer strings become numbers again when they are safe.
 */
function detailMembers(details: Record<string, unknown>): Record<string, unknown> {
  const members: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(details)) {
    if (RESERVED_MEMBERS.has(key) || INTERNAL_MEMBERS.has(key)) continue;
    if (typeof value === "string" && INTEGER_STRING.test(value) && Number.isSafeInteger(Number(value))) members[key] = Number(value);
    else if (typeof value === "bigint") members[key] = Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
    else members[key] = value;
  }
  return members;
}

/** Builds a problem document for `code` (status and title from the one mapping table). */
export function buildProblem(
  typeBaseUri: string,
  code: ProblemCode,
  detail: string,
  extensions: Record<string, unknown> = {},
  instance?: string,
  traceId?: string,
): ProblemDocument {
  return {
    ...detailMembers(extensions),
    type: `${typeBaseUri}${code}`,
    title: PROBLEM_TITLES[code],
    status: httpStatusForCode(code),
    detail,
    code,
    ...(instance ? { instance } : {}),
    ...(traceId ? { trace_id: traceId } : {}),
  };
}

/** Sends `problem` as `application/problem+json` (pre-serialized: no route schema applies). */
export function sendProblem(reply: FastifyReply, problem: ProblemDocument): FastifyReply {
  if (problem.status === 401 && !reply.hasHeader("www-authenticate")) reply.header("www-authenticate", BEARER_CHALLENGE);
  return reply.code(problem.status).header("content-type", PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem));
}

interface ValidationIssue {
  instancePath?: string;
  message?: string;
}

/** `body.photo_url`-style name of the field a validation issue is about. */
function fieldName(context: string | undefined, issue: ValidationIssue): string {
  const part = context === "querystring" ? "query" : (context ?? "request");
  const path = (issue.instancePath ?? "").split("/").filter(Boolean).join(".");
  return path ? `${part}.${path}` : part;
}

/** Maps a Fastify framework error (not a DomainError) to a problem code and detail. */
function classifyFrameworkError(error: FastifyError): { code: ProblemCode; detail: string; extensions?: Record<string, unknown> } | undefined {
  if (error.validation && error.validation.length > 0) {
    const issues = (error.validation as ValidationIssue[]).map((issue) => ({
      field: fieldName(error.validationContext, issue),
      message: issue.message ?? "is invalid",
    }));
    const detail = issues.map((issue) => `${issue.field}: ${issue.message}`).join("; ");
    return { code: "validation", detail, extensions: { errors: issues } };
  }
  switch (error.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return { code: "payload_too_large", detail: "request body is larger than the limit" };
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return { code: "unsupported_media_type", detail: "request bodies must be application/json" };
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return { code: "validation", detail: "request body is not valid JSON" };
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return { code: "validation", detail: "request body is empty but its content type is JSON" };
  }
  const status = error.statusCode ?? 500;
  if (status === 404) return { code: "not_found", detail: error.message };
  if (status === 405) return { code: "method_not_allowed", detail: error.message };
  if (status === 413) return { code: "payload_too_large", detail: error.message };
  if (status === 415) return { code: "unsupported_media_type", detail: error.message };
  if (status === 429) return { code: "rate_limited", detail: error.message };
  // Any other client error Fastify raises (bad content length, bad URL encoding, ...) is the
  // client's mistake: it must never become a 500.
  if (status >= 400 && status < 500) return { code: "validation", detail: error.message };
  return undefined;
}

/**
 * Installs the error and not-found handlers: every error leaves as RFC 9457 problem+json with
 * a stable `code`. DomainErrors (thrown by routes or rejected by `callUnary` with the callee's
 * reason) map through the one status table; Fastify's own errors map to 400/404/413/415;
 * anything else is a bug, logged and answered 500 `internal` without leaking its message.
 */
export function installProblemHandlers(app: FastifyInstance, typeBaseUri: string, logger: Logger): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const instance = request.url;
    const traceId = traceIdOf(request.span);
    if (error instanceof DomainError) {
      const status = httpStatusForCode(error.reason);
      if (status < 500) return sendProblem(reply, buildProblem(typeBaseUri, error.reason, error.message, error.details, instance, traceId));
      // A server-side failure's message names hosts, ports and internals: log it, answer generically.
      logger.warn({ reason: error.reason, err: error.message, method: request.method, url: request.url }, "downstream failure");
      return sendProblem(reply, buildProblem(typeBaseUri, error.reason, SERVER_FAILURE_DETAILS[error.reason] ?? "internal error", {}, instance, traceId));
    }
    const fastifyError = error as FastifyError;
    if (typeof error === "object" && error !== null && !isResponseSerializationError(fastifyError as never)) {
      const classified = hasZodFastifySchemaValidationErrors(error) || fastifyError.statusCode ? classifyFrameworkError(fastifyError) : undefined;
      if (classified) return sendProblem(reply, buildProblem(typeBaseUri, classified.code, classified.detail, classified.extensions, instance, traceId));
    }
    logger.error({ err: error, method: request.method, url: request.url }, "unexpected error");
    return sendProblem(reply, buildProblem(typeBaseUri, "internal", "internal error", {}, instance, traceId));
  });

  app.setNotFoundHandler((request: FastifyRequest, reply: FastifyReply) =>
    sendProblem(
      reply,
      buildProblem(typeBaseUri, "not_found", `no route ${request.method} ${request.url.split("?")[0]}`, {}, request.url, traceIdOf(request.span)),
    ),
  );
}

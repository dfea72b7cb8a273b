import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from "fastify-type-provider-zod";
import { DomainError, type Logger } from "@tally/platform/src/stateless";
import { deletedAccountError } from "../auth/authenticate";
import { traceIdOf } from "../tracing";
import { httpStatusForCode, type ProblemCode } from "./http-status";
import { boundedEcho, buildProblem, sendProblem } from "./problem";
import { limitDetails, retryAfterSeconds } from "./retry-after";

/** What a client is told about failures on our side (their real messages go to the log). */
const SERVER_FAILURE_DETAILS: Partial<Record<ProblemCode, string>> = {
  unavailable: "a service this request needs is unavailable; try again later",
  deadline_exceeded: "a service this request needs did not answer in time; try again later",
  internal: "internal error",
};

/** Longest path parameter Fastify's router accepts (its `maxParamLength` default); longer is 414. */
export const PATH_PARAMETER_LENGTH_MAX = 100;

interface ValidationIssue {
  instancePath?: string;
  message?: string;
}

interface Classified {
  code: ProblemCode;
  detail: string;
  extensions?: Record<string, unknown>;
}

/** `body.photo_url`-style name of the field a validation issue is about. */
function fieldName(context: string | undefined, issue: ValidationIssue): string {
  const part = context === "querystring" ? "query" : (context ?? "request");
  const path = (issue.instancePath ?? "").split("/").filter(Boolean).join(".");
  return path ? `${part}.${path}` : part;
}

/** A schema validation failure as a 400 `validation` naming every field. */
function classifyValidation(error: FastifyError): Classified {
  const issues = (error.validation as ValidationIssue[]).map((issue) => ({
    field: fieldName(error.validationContext, issue),
    message: issue.message ?? "is invalid",
  }));
  const detail = issues.map((issue) => `${issue.field}: ${issue.message}`).join("; ");
  return { code: "validation", detail, extensions: { errors: issues } };
}

/**
 * Maps a Fastify framework error (not a DomainError) to a problem code and detail. Fastify's
 * messages may quote the request (a URL, a media type), so only bounded parts reach `detail`.
 */
function classifyFrameworkError(error: FastifyError): Classified | undefined {
  if (error.validation && error.validation.length > 0) return classifyValidation(error);
  switch (error.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return { code: "payload_too_large", detail: "request body is larger than the limit" };
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return { code: "unsupported_media_type", detail: "request bodies must be application/json" };
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return { code: "validation", detail: "request body is not valid JSON" };
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return { code: "validation", detail: "request body is empty but its content type is JSON" };
    case "FST_ERR_BAD_URL":
      return { code: "bad_url", detail: "the request path is not valid percent-encoded UTF-8" };
    case "FST_ERR_MAX_PARAM_LENGTH":
      return { code: "uri_too_long", detail: `a path parameter is longer than ${PATH_PARAMETER_LENGTH_MAX} characters` };
  }
  const status = error.statusCode ?? 500;
  const detail = boundedEcho(error.message);
  if (status === 404) return { code: "not_found", detail };
  if (status === 405) return { code: "method_not_allowed", detail };
  if (status === 413) return { code: "payload_too_large", detail };
  if (status === 415) return { code: "unsupported_media_type", detail };
  if (status === 429) return { code: "rate_limited", detail };
  // Any other client error Fastify raises (bad content length, ...) is the client's mistake:
  // it must never become a 500.
  if (status >= 400 && status < 500) return { code: "validation", detail };
  return undefined;
}

/**
 * True when a service answered `not_found` for the signed-up caller's own account: the
 * live-account check let the request in, and the account was deleted before a service reached
 * it (a `DELETE /v1/me` racing this request). The caller is answered as the check answers a
 * deleted account's token, not with a 404 the route never documents.
 */
function ownAccountDeleted(error: DomainError, request: FastifyRequest): boolean {
  const principal = request.principal;
  return error.reason === "not_found" && principal?.kind === "user" && error.details.account_id === principal.accountId;
}

/**
 * The problem for a DomainError: its reason and message, or a generic detail for a 5xx
 * (logged); the caller's own account found deleted (`ownAccountDeleted`) is 401
 * `unauthenticated`, challenge `invalid_token`. Limit problems carry the limit's details as
 * members; `guest_limit_exceeded`, `rate_limited` and `unavailable` carry `Retry-After`
 * (errors/retry-after.ts).
 */
function sendDomainProblem(typeBaseUri: string, logger: Logger, error: DomainError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (ownAccountDeleted(error, request)) error = deletedAccountError(reply);
  const instance = request.url;
  const traceId = traceIdOf(request.span);
  const retryAfter = retryAfterSeconds(error.reason, error.details, Date.now());
  if (retryAfter !== undefined) reply.header("retry-after", retryAfter);
  if (httpStatusForCode(error.reason) < 500) {
    return sendProblem(reply, buildProblem(typeBaseUri, error.reason, error.message, limitDetails(error.reason, error.details), instance, traceId));
  }
  // A server-side failure's message names hosts, ports and internals: log it, answer generically.
  logger.warn({ reason: error.reason, err: error.message, method: request.method, url: boundedEcho(request.url) }, "downstream failure");
  const detail = SERVER_FAILURE_DETAILS[error.reason] ?? "internal error";
  return sendProblem(reply, buildProblem(typeBaseUri, error.reason, detail, {}, instance, traceId));
}

/**
 * The one error mapper: every error a route, hook, parser or the router raises leaves as
 * RFC 9457 problem+json with a stable `code` (INV-7). DomainErrors (thrown by routes or
 * rejected by `callUnary` with the callee's reason) map through the one status table;
 * Fastify's own errors map to their 4xx codes; anything else is a bug, logged and answered
 * 500 `internal` without leaking its message.
 */
export function problemErrorHandler(typeBaseUri: string, logger: Logger) {
  return (error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (error instanceof DomainError) return sendDomainProblem(typeBaseUri, logger, error, request, reply);
    const fastifyError = error as FastifyError;
    if (typeof error === "object" && error !== null && !isResponseSerializationError(fastifyError as never)) {
      const classified = hasZodFastifySchemaValidationErrors(error) || fastifyError.statusCode ? classifyFrameworkError(fastifyError) : undefined;
      if (classified) {
        const problem = buildProblem(typeBaseUri, classified.code, classified.detail, classified.extensions, request.url, traceIdOf(request.span));
        return sendProblem(reply, problem);
      }
    }
    logger.error({ err: error, method: request.method, url: boundedEcho(request.url) }, "unexpected error");
    return sendProblem(reply, buildProblem(typeBaseUri, "internal", "internal error", {}, request.url, traceIdOf(request.span)));
  };
}

/**
 * Fastify's `frameworkErrors` option: the router's own refusals before any route or hook runs
 * (a path that is not valid percent-encoding → 400 `bad_url`, a path parameter over
 * PATH_PARAMETER_LENGTH_MAX → 414 `uri_too_long`). The URL is malformed or huge, so the
 * problem carries no `instance`.
 */
export function frameworkErrorHandler(typeBaseUri: string, logger: Logger) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    const classified = classifyFrameworkError(error);
    if (!classified) logger.error({ err: error, method: request.method }, "unexpected router error");
    const { code, detail } = classified ?? { code: "internal" as const, detail: "internal error" };
    sendProblem(reply, buildProblem(typeBaseUri, code, detail));
  };
}

/**
 * Installs the error and not-found handlers, the query check and the Host check. Unknown
 * routes and methods are 404 `not_found` naming the (bounded) path. A query string that is not
 * valid percent-encoded UTF-8 is 400 `bad_url` (`decodableQuery`), as such a path is. Node's
 * parser is told not to refuse a missing Host itself (it would answer a bare 400), so an
 * HTTP/1.1 request without one is refused here as 400 `bad_request` in the same shape as every
 * other answer.
 */
export function installProblemHandlers(app: FastifyInstance, typeBaseUri: string, logger: Logger): void {
  app.setErrorHandler(problemErrorHandler(typeBaseUri, logger));
  app.setNotFoundHandler((request: FastifyRequest, reply: FastifyReply) => {
    const detail = `no route ${request.method} ${boundedEcho(request.url.split("?")[0]!)}`;
    return sendProblem(reply, buildProblem(typeBaseUri, "not_found", detail, {}, request.url, traceIdOf(request.span)));
  });
  app.addHook("onRequest", async (request, reply) => {
    if (!decodableQuery(request.raw.url ?? "")) return sendProblem(reply, buildProblem(typeBaseUri, "bad_url", "the query string is not valid percent-encoded UTF-8"));
    if (request.raw.httpVersion !== "1.1" || request.headers.host !== undefined) return;
    return sendProblem(reply, buildProblem(typeBaseUri, "bad_request", "an HTTP/1.1 request must carry a Host header"));
  });
}

/**
 * True when every name and value of `url`'s query string is valid percent-encoded UTF-8. The
 * query parser keeps an undecodable one (`%ZZ`, `%FF`) as raw text, so a route would take it
 * as meant; the path's router refuses the same with `bad_url`.
 */
export function decodableQuery(url: string): boolean {
  const start = url.indexOf("?");
  if (start < 0) return true;
  const query = url.slice(start + 1);
  if (!query.includes("%")) return true;
  try {
    for (const part of query.split(/[&=]/)) decodeURIComponent(part);
    return true;
  } catch {
    return false;
  }
}

import { STATUS_CODES } from "node:http";
import type { FastifyReply } from "fastify";
import { BEARER_CHALLENGE } from "../auth/authenticate";
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

/**
 * Longest request-derived text a problem repeats back, in characters: a longer `instance` is
 * left out and a longer path in a `detail` is cut, so no answer echoes unbounded input.
 */
export const ECHO_LENGTH_MAX = 256;

/** `text` as it may appear in a detail: at most ECHO_LENGTH_MAX characters, marked when cut. */
export const boundedEcho = (text: string): string => (text.length > ECHO_LENGTH_MAX ? `${text.slice(0, ECHO_LENGTH_MAX)}…` : text);

/**
 * Builds a problem document for `code` (status and title from the one mapping table).
 * `instance` (the request's URL) is kept only up to ECHO_LENGTH_MAX characters.
 */
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
    ...(instance && instance.length <= ECHO_LENGTH_MAX ? { instance } : {}),
    ...(traceId ? { trace_id: traceId } : {}),
  };
}

/** Sends `problem` as `application/problem+json` (pre-serialized: no route schema applies). */
export function sendProblem(reply: FastifyReply, problem: ProblemDocument): FastifyReply {
  if (problem.status === 401 && !reply.hasHeader("www-authenticate")) reply.header("www-authenticate", BEARER_CHALLENGE);
  return reply.code(problem.status).header("content-type", PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem));
}

/**
 * `problem` as a complete HTTP/1.1 response, for answers written straight to a socket (Node's
 * parser refused the request, so there is no reply object). The connection closes after it:
 * after a malformed request the rest of the stream cannot be trusted.
 */
export function rawProblemResponse(problem: ProblemDocument): string {
  const body = JSON.stringify(problem);
  return [
    `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? ""}`,
    `Content-Type: ${PROBLEM_CONTENT_TYPE}`,
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    "",
    body,
  ].join("\r\n");
}

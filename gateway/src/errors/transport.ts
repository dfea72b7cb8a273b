import type { Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "@tally/platform/src/stateless";
import type { ProblemCode } from "./http-status";
import { buildProblem, PROBLEM_CONTENT_TYPE, rawProblemResponse } from "./problem";

/**
 * Answers to requests Node's HTTP parser refuses before Fastify sees them. Without these,
 * Node and Fastify answer in their own shapes (a bare `{"error":"Bad Request"}`, a 417 with no
 * body); here they are problem+json like every other answer (INV-7), and never quote the
 * request, which may be huge.
 */

/** The code and detail for a parser error, by Node's error code. */
function classifyClientError(errorCode: string | undefined): { code: ProblemCode; detail: string } {
  switch (errorCode) {
    case "HPE_HEADER_OVERFLOW":
      return { code: "header_fields_too_large", detail: "the request line and headers are larger than the server accepts" };
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return { code: "request_timeout", detail: "the request did not arrive in time" };
    default:
      return { code: "bad_request", detail: "the request is not well-formed HTTP/1.1" };
  }
}

/** True when a response is already being written on `socket` (answering again would corrupt it). */
function responseInFlight(socket: Duplex): boolean {
  // Node's own fallback checks the same: the in-flight ServerResponse of a kept-alive socket.
  const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  return inFlight?.headersSent === true;
}

/**
 * Fastify's `clientErrorHandler` option (Node's `clientError` event): writes a well-formed
 * HTTP/1.1 problem response straight to the socket and closes it. A reset or already
 * destroyed connection has no one to answer.
 */
export function clientErrorHandler(typeBaseUri: string, logger: Logger) {
  return (error: Error & { code?: string }, socket: Duplex): void => {
    if (error.code === "ECONNRESET" || socket.destroyed) return;
    const { code, detail } = classifyClientError(error.code);
    // Client mistakes, not ours: debug level, and never the raw packet (it is the client's input).
    logger.debug({ code: error.code, problem: code }, "malformed HTTP request");
    if (socket.writable && !responseInFlight(socket)) socket.write(rawProblemResponse(buildProblem(typeBaseUri, code, detail)));
    socket.destroy();
  };
}

/**
 * Answers, in problem+json, the two requests Node would otherwise answer or drop itself: an
 * `Expect` other than `100-continue` (Node: 417 with no body) and `CONNECT` (Node: the
 * connection is dropped with no answer; the gateway is no proxy, so 405).
 */
export function installTransportProblems(server: Server, typeBaseUri: string): void {
  server.on("checkExpectation", (_request, response) => {
    const body = JSON.stringify(buildProblem(typeBaseUri, "expectation_failed", "the only expectation supported is 100-continue"));
    response.writeHead(417, { "content-type": PROBLEM_CONTENT_TYPE, "content-length": Buffer.byteLength(body), connection: "close" });
    response.end(body);
  });
  server.on("connect", (_request, socket: Duplex) => {
    socket.end(rawProblemResponse(buildProblem(typeBaseUri, "method_not_allowed", "CONNECT is not supported: this is not a proxy")));
  });
}

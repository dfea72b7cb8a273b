import { PassThrough } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { context as otelContext } from "@opentelemetry/api";
import { z } from "zod";
import { generations } from "@tally/contracts";
import { DomainError, fromServiceError, injectTraceMetadata } from "@tally/platform/src/stateless";
import type { FastifyRequest } from "fastify";
import { principalOf } from "../../auth/authenticate";
import { presentGeneration, presentGenerationStatus } from "../presenters";
import { idParams } from "../schemas";
import { generationIdFrom, outputUrlBuilder, security, type GenerationRouteDeps, type ZodRoutes } from "./shared";

/** A seq as the client sends it back: a whole number that fits int64 (18 digits always do). */
const SEQ_PATTERN = /^\d{1,18}$/;
const SEQ_MESSAGE = "must be the id of an event this stream sent (a whole number)";
const seq = z.string().regex(SEQ_PATTERN, SEQ_MESSAGE);

const eventsHeaders = z.looseObject({
  "last-event-id": seq.optional().describe("Resume after this event (EventSource sends it when it reconnects)"),
});
const eventsQuery = z.object({
  last_event_id: seq.optional().describe("Resume after this event, where a client cannot set the Last-Event-ID header"),
});

type Watch = grpc.ClientReadableStream<generations.WatchGenerationResponse>;

/**
 * `GET /v1/generations/:id/events`: the generation's changes of status and progress as
 * `text/event-stream` until it ends, then the stream closes (one event and close for a job
 * that has already ended). Owner only (user or guest; anybody else 404 as for GET). Each event
 * is `id: <seq>`, `event: status` (the whole Generation, as GET answers it: on the first event
 * and every change of status) or `event: progress` (`{id, status, progress}`); `Last-Event-ID`
 * (or `?last_event_id=`) resumes after that seq; a `: heartbeat` comment every
 * SSE_HEARTBEAT_MS keeps proxies from closing an idle stream. Fed by generations'
 * WatchGeneration stream (its database notifications), never by polling; a client that goes
 * away cancels it. Errors (before the stream starts, as problem+json): 400 `validation`
 * (a bad Last-Event-ID), 404 `not_found`, 503 `unavailable` (generations down, or its
 * WATCH_MAX_STREAMS reached: Retry-After).
 */
export function generationEventsRoute(routes: ZodRoutes, { context, onRequest }: GenerationRouteDeps): void {
  const generationsClient = context.clients.generations;
  const open = new Set<() => void>();
  // Open streams would hold a graceful close forever: they end first (clients reconnect with Last-Event-ID).
  routes.addHook("preClose", async () => {
    for (const close of open) close();
  });
  routes.get(
    "/v1/generations/:id/events",
    {
      onRequest,
      schema: {
        tags: ["generations"],
        summary: "Follow a generation's status and progress (server-sent events)",
        description:
          "text/event-stream of `status` and `progress` events (`id:` is the change's seq) until the generation ends; `Last-Event-ID` or `last_event_id` resumes; `: heartbeat` comments keep the connection alive.",
        security,
        params: idParams,
        headers: eventsHeaders,
        querystring: eventsQuery,
      },
    },
    async (request, reply) => {
      const { accountId } = principalOf(request);
      const generationId = generationIdFrom(request.params);
      const afterSeq = BigInt(request.headers["last-event-id"] ?? request.query.last_event_id ?? "0");
      const watch = openWatch(generationsClient, request, { userId: accountId, generationId, afterSeq }, context.config.SSE_STREAM_MAX_MS);
      // A client gone before the watch is accepted cancels it too (accepted() then rejects).
      const cancelEarly = () => watch.cancel();
      reply.raw.once("close", cancelEarly);
      await accepted(watch);
      reply.raw.off("close", cancelEarly);
      const body = streamEvents(watch, { heartbeatMs: context.config.SSE_HEARTBEAT_MS, outputUrlFor: outputUrlBuilder(request), open });
      reply.raw.on("close", () => body.destroy());
      return reply
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache, no-transform")
        // nginx and similar proxies would otherwise buffer the stream.
        .header("x-accel-buffering", "no")
        .send(body);
    },
  );
}

/** Starts WatchGeneration with the request's trace context and a lifetime of `maxMs` (past it the stream ends and the client resumes). */
function openWatch(client: generations.GenerationsServiceClient, request: FastifyRequest, watch: generations.WatchGenerationRequest, maxMs: number): Watch {
  const metadata = new grpc.Metadata();
  otelContext.with(request.traceContext ?? otelContext.active(), () => injectTraceMetadata(metadata));
  return client.watchGeneration(watch, metadata, { deadline: Date.now() + maxMs });
}

/**
 * Resolves once generations accepted the watch (its response headers: the generation is the
 * caller's), rejects with the call's DomainError (not_found, validation, unavailable) before that.
 */
function accepted(watch: Watch): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      watch.off("metadata", done);
      watch.off("error", failed);
      resolve();
    };
    const failed = (error: grpc.ServiceError) => {
      watch.off("metadata", done);
      reject(error.code === grpc.status.DEADLINE_EXCEEDED ? new DomainError("unavailable", "the generations service did not answer") : fromServiceError(error));
    };
    watch.on("metadata", done);
    watch.once("error", failed);
  });
}

interface StreamOptions {
  heartbeatMs: number;
  outputUrlFor: (id: string) => string;
  /** Closers of the open streams (the app's preClose ends them). */
  open: Set<() => void>;
}

/**
 * The SSE body of an accepted watch: one event per message, a heartbeat comment every
 * `heartbeatMs`, the end when the watch ends (or fails: the client resumes). Backpressure: a
 * slow client pauses the watch (gRPC flow control then holds the sender). Destroying the body
 * (client gone, app closing) cancels the watch.
 */
function streamEvents(watch: Watch, options: StreamOptions): PassThrough {
  const body = new PassThrough();
  const heartbeat = setInterval(() => body.write(": heartbeat\n\n"), options.heartbeatMs);
  const close = () => body.end();
  options.open.add(close);
  const cleanup = () => {
    clearInterval(heartbeat);
    options.open.delete(close);
    watch.cancel();
  };
  // A retry hint for EventSource, then the events.
  body.write("retry: 1000\n\n");
  watch.on("data", (message: generations.WatchGenerationResponse) => {
    if (!body.write(formatEvent(message, options.outputUrlFor))) {
      watch.pause();
      body.once("drain", () => watch.resume());
    }
  });
  watch.on("end", close);
  // After acceptance a failure (generations stopping, the lifetime passed) just ends the stream.
  watch.on("error", close);
  body.on("close", cleanup);
  body.on("finish", cleanup);
  return body;
}

/** One SSE event: `id` the seq, `event` status or progress, `data` one line of JSON. */
export function formatEvent(message: generations.WatchGenerationResponse, outputUrlFor: (id: string) => string): string {
  const data = message.generation
    ? presentGeneration(message.generation, outputUrlFor)
    : { id: message.generationId, status: presentGenerationStatus(message.status), progress: message.progressPercent };
  return `id: ${message.seq}\nevent: ${message.generation ? "status" : "progress"}\ndata: ${JSON.stringify(data)}\n\n`;
}

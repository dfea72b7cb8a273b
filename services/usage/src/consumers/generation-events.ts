import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { nanos } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import {
  contextFromCarrier,
  DomainError,
  ensureStream,
  generationSubjects,
  tracer,
  type Logger,
  type NatsConnection,
  type Orm,
} from "@tally/platform";
import { decodeGenerationEvent } from "../domain/generation-event";
import { recordDeadLetter, recordUsage } from "../service/usage-service";

/** What the consumer needs from the service's config. */
export interface GenerationEventConsumerConfig {
  stream: string;
  subjectPrefix: string;
  consumerName: string;
  duplicateWindowMs: number;
  streamMaxAgeMs: number;
  batchSize: number;
  /** How long one pull request waits for messages, in milliseconds (>= 1000); bounds the stop time. */
  fetchExpiresMs: number;
  ackWaitMs: number;
  nakDelayMs: number;
  /** -1 = unlimited. */
  maxDeliver: number;
  maxAckPending: number;
}

export interface GenerationEventConsumer {
  /** Stops pulling, finishes (commit + ack) the message in hand and gives back the rest of the batch. */
  stop(): Promise<void>;
}

/** Pause before pulling again after a pull failed, in milliseconds. */
const PULL_RETRY_DELAY_MS = 1_000;

const TRACER_NAME = "tally-usage";

/**
 * Consumes generation events from JetStream into the usage log.
 *
 * At start-up it ensures the stream (same settings as the producer; idempotent) and creates or
 * updates the durable pull consumer: explicit acks, `ack_wait`, unlimited (or configured)
 * redeliveries, filtered on the generation subjects. It pulls batches (`fetch`) and handles
 * each message in turn:
 * - recorded in one transaction (inbox + usage log + stats), then acked; a duplicate event id
 *   is acked without effect. Acking only after the commit means a crash in between only
 *   causes a redelivery, which the inbox absorbs (DESIGN invariant 5).
 * - a transient failure (database down, a bug) is `nak`ed with `nakDelayMs`: it comes back.
 * - a message that can never be processed (unknown subject, undecodable payload, invalid
 *   fields) is stored raw in `dead_letters` and then `term`inated, so it is neither lost nor
 *   retried forever, and does not hold up the messages behind it.
 * The producer's trace continues: each message is handled in a span whose parent is the
 * `traceparent` header.
 */
export async function startGenerationEventConsumer(deps: {
  nc: NatsConnection;
  orm: Orm;
  config: GenerationEventConsumerConfig;
  logger: Logger;
}): Promise<GenerationEventConsumer> {
  const { nc, orm, config } = deps;
  const logger = deps.logger.child({ component: "generation-events-consumer" });
  const subjects = generationSubjects(config.subjectPrefix);

  await ensureStream(nc, {
    name: config.stream,
    subjects: [subjects.all],
    duplicateWindowMs: config.duplicateWindowMs,
    maxAgeMs: config.streamMaxAgeMs,
  });
  await ensureDurableConsumer(nc, config, subjects.all);
  const consumer = await jetstream(nc).consumers.get(config.stream, config.consumerName);

  let stopping = false;

  const handle = async (msg: JsMsg): Promise<void> => {
    const parent = contextFromCarrier({ traceparent: header(msg, "traceparent"), tracestate: header(msg, "tracestate") });
    const span = tracer(TRACER_NAME).startSpan(
      `${msg.subject} process`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "nats",
          "messaging.destination.name": msg.subject,
          "messaging.message.id": header(msg, "Nats-Msg-Id") ?? "",
          "messaging.nats.stream_sequence": msg.info.streamSequence,
          "messaging.nats.delivery_count": msg.info.deliveryCount,
        },
      },
      parent,
    );
    await context.with(trace.setSpan(parent, span), async () => {
      try {
        await processMessage(msg);
      } catch (error) {
        span.setStatus({ code: SpanStatusCode.ERROR });
        throw error;
      } finally {
        span.end();
      }
    });
  };

  const processMessage = async (msg: JsMsg): Promise<void> => {
    const where = { subject: msg.subject, stream_sequence: msg.info.streamSequence, delivery_count: msg.info.deliveryCount };
    let draft;
    try {
      draft = decodeGenerationEvent(config.subjectPrefix, msg.subject, msg.data);
    } catch (error) {
      if (error instanceof DomainError) return deadLetter(msg, error.message);
      throw error;
    }
    try {
      const outcome = await recordUsage(orm, msg.subject, draft);
      msg.ack();
      if (outcome.kind === "duplicate") logger.info({ ...where, event_id: draft.eventId }, "duplicate event skipped");
      else logger.debug({ ...where, event_id: draft.eventId, usage_log_entry_id: outcome.entry.id }, "usage recorded");
    } catch (error) {
      if (isPermanentDatabaseError(error)) return deadLetter(msg, `database refused the event: ${(error as Error).message}`);
      // Transient (database down, timeout) or a bug: keep the message and try again later.
      logger.warn({ ...where, err: error, nak_delay_ms: config.nakDelayMs }, "could not record event, will retry");
      msg.nak(config.nakDelayMs);
    }
  };

  const deadLetter = async (msg: JsMsg, reason: string): Promise<void> => {
    const where = { subject: msg.subject, stream_sequence: msg.info.streamSequence, delivery_count: msg.info.deliveryCount };
    try {
      await recordDeadLetter(orm, {
        stream: msg.info.stream,
        streamSequence: msg.info.streamSequence,
        subject: msg.subject,
        payload: msg.data,
        headers: headersOf(msg),
        error: reason,
        deliveryCount: msg.info.deliveryCount,
      });
    } catch (error) {
      logger.warn({ ...where, err: error }, "could not store dead letter, will retry");
      msg.nak(config.nakDelayMs);
      return;
    }
    logger.error({ ...where, reason }, "message can never be processed: stored in dead_letters and terminated");
    msg.term(reason.slice(0, 200));
  };

  const run = async (): Promise<void> => {
    while (!stopping) {
      try {
        // One pull request at a time, left to finish (batch full or expired) rather than
        // closed early: a closed subscription would leave the server delivering into an inbox
        // nobody reads, and those messages would wait out ack_wait.
        const batch = await consumer.fetch({ max_messages: config.batchSize, expires: config.fetchExpiresMs });
        for await (const msg of batch) {
          if (stopping) {
            // Pulled but not started: give it back. The delay keeps it from bouncing into this
            // same pull request before it ends; another replica or the next start takes it.
            msg.nak(config.fetchExpiresMs);
            continue;
          }
          await handle(msg);
        }
      } catch (error) {
        if (stopping) break;
        logger.error({ err: error }, "pulling generation events failed, retrying");
        await new Promise((resolve) => setTimeout(resolve, PULL_RETRY_DELAY_MS));
      }
    }
  };
  const running = run();
  logger.info({ stream: config.stream, consumer: config.consumerName, filter_subject: subjects.all }, "consuming generation events");

  return {
    async stop() {
      if (stopping) return running;
      stopping = true;
      // Ends once the message in hand is committed and acked and the current pull request
      // has finished (at most fetchExpiresMs).
      await running;
      logger.info("generation events consumer stopped");
    },
  };
}

/**
 * Creates the durable pull consumer, or updates the settings that may change on an existing
 * one (replicas and restarts share it; its position survives them).
 */
async function ensureDurableConsumer(nc: NatsConnection, config: GenerationEventConsumerConfig, filterSubject: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const updatable = {
    ack_wait: nanos(config.ackWaitMs),
    max_deliver: config.maxDeliver,
    max_ack_pending: config.maxAckPending,
    filter_subject: filterSubject,
  };
  try {
    await jsm.consumers.info(config.stream, config.consumerName);
  } catch (error) {
    if (!/not found/i.test(String((error as Error)?.message ?? error))) throw error;
    try {
      await jsm.consumers.add(config.stream, {
        durable_name: config.consumerName,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ...updatable,
      });
      return;
    } catch (addError) {
      // Another replica created it first: fall through to the update.
      if (!/already (exists|in use)/i.test(String(addError))) throw addError;
    }
  }
  await jsm.consumers.update(config.stream, config.consumerName, updatable);
}

/**
 * True for errors PostgreSQL will raise again however often the message is retried: data
 * exceptions (class 22, e.g. a value out of range) and check violations (23514).
 */
function isPermanentDatabaseError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && (code.startsWith("22") || code === "23514");
}

function header(msg: JsMsg, name: string): string | undefined {
  const value = msg.headers?.get(name);
  return value ? value : undefined;
}

function headersOf(msg: JsMsg): Record<string, string[]> {
  const headers: Record<string, string[]> = {};
  if (msg.headers) for (const [key, values] of msg.headers) headers[key] = values;
  return headers;
}

import { context, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { jetstream, type Consumer, type JsMsg } from "@nats-io/jetstream";
import {
  contextFromCarrier,
  DomainError,
  ensureStream,
  generationSubjects,
  isPermanentDatabaseError,
  PollingLoop,
  tracer,
  type Logger,
  type NatsConnection,
} from "@tally/platform";
import { decodeCancelledEvent, decodeDownloadedEvent, decodeGenerationEvent } from "../adapter/event-decoding";
import type { DeadLetterService } from "../service/dead-letters";
import type { UsageEvent, UsageEventOutcome, UsageLogService } from "../service/usage-log";
import { ensureDurableConsumer, header, headersOf, laneOf, position } from "./generation-event-messages";

/** What the consumer needs from the service's config. */
export interface GenerationEventConsumerConfig {
  stream: string;
  subjectPrefix: string;
  consumerName: string;
  duplicateWindowMs: number;
  streamMaxAgeMs: number;
  /** Most messages one pull request (one pass) takes. */
  batchSize: number;
  /** Lanes: messages split by user id, each lane one chunk at a time, the lanes at once (each chunk in its own transaction, >= 1). */
  chunksInFlight: number;
  /** How long one pull request waits for messages, in milliseconds (>= 1000); bounds the stop time. */
  fetchExpiresMs: number;
  ackWaitMs: number;
  nakDelayMs: number;
  /** -1 = unlimited. */
  maxDeliver: number;
  maxAckPending: number;
}

export interface GenerationEventConsumerDeps {
  nc: NatsConnection;
  usageLog: UsageLogService;
  deadLetters: DeadLetterService;
  config: GenerationEventConsumerConfig;
  logger: Logger;
}

/**
 * Pause after `PULLS_IN_A_ROW_MAX` pull requests in a row, and the first pause after a failed
 * one (doubling up to `PULL_BACKOFF_MAX_MS` while pulls keep failing), in milliseconds.
 */
const PULL_PAUSE_MS = 200;
const PULL_BACKOFF_MAX_MS = 5_000;
/** Pull requests in a row before the loop pauses, however many messages are waiting. */
const PULLS_IN_A_ROW_MAX = 50;

const TRACER_NAME = "tally-usage";

/** A message of a chunk, decoded, with the span it is handled in. */
interface Decoded {
  msg: JsMsg;
  event: UsageEvent;
  eventId: string;
  span: Span;
}

/** A pulled message decoded on arrival: its event, or (`decoded` null) the error that stopped it. */
interface Prepared {
  msg: JsMsg;
  span: Span;
  decoded: { event: UsageEvent; eventId: string } | null;
  error: unknown;
}

/**
 * Consumes generation events from JetStream into the usage log (INV-5, the consumer's half).
 *
 * At start-up it ensures the stream (same settings as the producer; idempotent) and creates or
 * updates the durable pull consumer. A platform `PollingLoop` then runs passes: one pass is one
 * pull request (`fetch`) of up to `batchSize` messages, handled in chunks (what has arrived when
 * the previous chunk is done):
 * - a chunk is recorded in ONE transaction (inbox + usage log + limits per event, then the stats
 *   and monthly analytics set-based), then each message is acked; a duplicate event id (already
 *   in the inbox, or twice in the chunk) is acked without effect. Acking only after the commit
 *   means a crash in between only causes a redelivery, which the inbox absorbs (INV-5).
 * - a transient failure (database down, a deadlock, a bug) naks the chunk with `nakDelayMs`: it
 *   comes back. A permanent one (a value PostgreSQL refuses) re-records the chunk one event per
 *   transaction, so only the bad event is dead-lettered and the rest commit.
 * - a message that can never be processed (unknown subject, undecodable payload, invalid
 *   fields, a value PostgreSQL refuses) is stored raw in `dead_letters` and then `term`inated,
 *   alone, so it is neither lost nor retried forever and does not hold up the others.
 * Each message is handled in a span whose parent is its `traceparent` header; each transaction
 * runs in a `usage.record` span, the child of its chunk's first message span.
 */
export class GenerationEventConsumer {
  private readonly loop: PollingLoop;
  private readonly logger: Logger;
  /** The generation subjects under the configured prefix, worked out once (every message is matched against them). */
  private readonly subjects: ReturnType<typeof generationSubjects>;
  private stopping = false;
  private stopped: Promise<void> | undefined;

  private constructor(
    private readonly deps: GenerationEventConsumerDeps,
    private readonly consumer: Consumer,
  ) {
    this.logger = deps.logger.child({ component: "generation-events-consumer" });
    this.subjects = generationSubjects(deps.config.subjectPrefix);
    const options = { name: "generation events consumer", intervalMs: PULL_PAUSE_MS, backoffMaxMs: PULL_BACKOFF_MAX_MS, passesInARowMax: PULLS_IN_A_ROW_MAX };
    this.loop = new PollingLoop(options, () => this.pullOnce(), this.logger);
  }

  /** Ensures the stream and the durable consumer, then starts pulling. */
  static async start(deps: GenerationEventConsumerDeps): Promise<GenerationEventConsumer> {
    const { nc, config } = deps;
    const subjects = generationSubjects(config.subjectPrefix);
    await ensureStream(nc, {
      name: config.stream,
      subjects: [subjects.all],
      duplicateWindowMs: config.duplicateWindowMs,
      maxAgeMs: config.streamMaxAgeMs,
    });
    await ensureDurableConsumer(nc, config, subjects.all);
    const consumer = new GenerationEventConsumer(deps, await jetstream(nc).consumers.get(config.stream, config.consumerName));
    consumer.loop.start();
    consumer.logger.info({ stream: config.stream, consumer: config.consumerName, filter_subject: subjects.all }, "consuming generation events");
    return consumer;
  }

  /**
   * The durable consumer's backlog as JetStream reports it: messages not yet delivered
   * (`pending`), delivered and not yet acknowledged (`ackPending`), and delivered more than once
   * so far (`redelivered`).
   */
  async backlog(): Promise<{ pending: number; ackPending: number; redelivered: number }> {
    const info = await this.consumer.info();
    return { pending: info.num_pending, ackPending: info.num_ack_pending, redelivered: info.num_redelivered };
  }

  /**
   * Stops pulling, finishes (commit + ack) the chunk in hand and gives back the rest of the
   * pull request. Resolves once the current pull request has ended (at most `fetchExpiresMs`).
   */
  stop(): Promise<void> {
    this.stopping = true;
    this.stopped ??= this.loop.stop().then(() => this.logger.info("generation events consumer stopped"));
    return this.stopped;
  }

  /**
   * One pass: one pull request of up to `batchSize` messages, handled in chunks. Each message is
   * decoded as it arrives (while the previous chunk records, so decoding costs the pass no time)
   * and joins its lane: `chunksInFlight` lanes, a message's lane chosen by its user id
   * (`laneOf`), so one user's events are always in one lane. Whatever has gathered in a lane
   * when that lane's previous chunk is done (never waiting for the request to fill up) is handed
   * over as the lane's next chunk, recorded in one transaction: the lanes record at once (each
   * on its own database connection), each one chunk at a time, in arrival order. Lanes never
   * share a user, so concurrent chunks do not wait on each other's subject locks, and a user's
   * events count in the order they arrived, except that a chunk nak'ed after a transient
   * failure comes back after the chunks that followed it, and an adopted guest's completion
   * counts in its adopter's rows from the guest's lane (with 1 lane: one chunk after another).
   * The platform's daily rollup, which every chunk moves, is each transaction's last statement
   * (its row locks held only while a chunk commits); an adopter locked by two lanes at once
   * may deadlock them: transient, nak'ed, retried. Once stopping, what has gathered and not
   * started is nak'ed. The pass ends when its chunks have. More may be waiting: always true.
   */
  private async pullOnce(): Promise<boolean> {
    const { batchSize, fetchExpiresMs, chunksInFlight } = this.deps.config;
    const lanes = Array.from({ length: Math.max(1, chunksInFlight) }, () => ({ gathered: [] as Prepared[], inFlight: null as Promise<void> | null }));
    const handOver = (lane: (typeof lanes)[number]) => {
      if (this.stopping) {
        // Pulled, not started: given back (the delay keeps it out of this pull; another replica or the next start takes it).
        for (const p of lane.gathered.splice(0)) {
          try {
            p.msg.nak(fetchExpiresMs);
          } catch (error) {
            // The connection is closing: the message comes back after ack_wait anyway.
            this.logger.warn({ ...position(p.msg), err: error }, "could not give back a pulled message");
          }
          p.span.end();
        }
        return;
      }
      if (lane.gathered.length === 0 || lane.inFlight) return;
      const chunk = lane.gathered;
      lane.gathered = [];
      // handleChunk settles each message; anything escaping it is a bug: logged, messages back after ack_wait. Its end hands over the lane's next.
      lane.inFlight = this.handleChunk(chunk)
        .catch((error: unknown) => this.logger.error({ err: error, messages: chunk.length }, "chunk not handled, its messages come back after ack_wait"))
        .finally(() => {
          lane.inFlight = null;
          handOver(lane);
        });
    };
    const handOverAll = () => lanes.forEach(handOver);
    // After handOverAll every lane with gathered messages is recording them (or has given them back).
    const busy = () => lanes.flatMap((l) => (l.inFlight ? [l.inFlight] : []));
    try {
      // The pull request is left to finish (batch full or expired) rather than closed early: a
      // closed subscription would leave the server delivering into an inbox nobody reads, and
      // those messages would wait out ack_wait.
      const batch = await this.consumer.fetch({ max_messages: batchSize, expires: fetchExpiresMs });
      for await (const msg of batch) {
        if (this.stopping) {
          msg.nak(fetchExpiresMs);
          continue;
        }
        const prepared = this.prepare(msg);
        lanes[laneOf(prepared, lanes.length)]!.gathered.push(prepared);
        if (batch.getPending() === 0) handOverAll();
      }
    } catch (error) {
      if (this.stopping) return false;
      throw error;
    } finally {
      // The pass ends with its chunks: each committed and acked, or nak'ed.
      for (handOverAll(); busy().length > 0; handOverAll()) await Promise.race(busy());
    }
    return true;
  }

  /** A pulled message in its CONSUMER span (continuing the producer's trace), decoded, or with why it could not be. */
  private prepare(msg: JsMsg): Prepared {
    const span = this.startSpan(msg);
    try {
      return { msg, span, decoded: this.decode(msg), error: undefined };
    } catch (error) {
      return { msg, span, decoded: null, error };
    }
  }

  /**
   * Handles a chunk of prepared messages: poison (a message that does not decode) is
   * dead-lettered alone; the rest is recorded in one transaction and acked after the
   * commit. When that transaction fails for a permanent reason (one event PostgreSQL refuses),
   * the chunk is recorded again one event per transaction, so the bad one is isolated and the
   * rest commit; a transient failure naks the whole chunk (it all comes back).
   */
  private async handleChunk(chunk: Prepared[]): Promise<void> {
    const decoded: Decoded[] = [];
    for (const { msg, span, decoded: ok, error } of chunk) {
      if (ok) decoded.push({ msg, event: ok.event, eventId: ok.eventId, span });
      else {
        if (error instanceof DomainError) await this.deadLetter(msg, error.message);
        else this.retryLater(msg, {}, error);
        span.end();
      }
    }
    if (decoded.length === 0) return;
    try {
      const outcomes = await this.inRecordSpan(decoded, () => this.deps.usageLog.recordBatch(decoded.map((d) => d.event)));
      decoded.forEach((d, i) => this.acked(d, outcomes[i]!));
    } catch (error) {
      if (decoded.length > 1 && isPermanentDatabaseError(error)) {
        this.logger.warn({ err: error, messages: decoded.length }, "batch refused, recording its events one by one");
        for (const d of decoded) await this.recordAlone(d);
        return;
      }
      for (const d of decoded) {
        if (isPermanentDatabaseError(error)) await this.deadLetter(d.msg, `database refused the event: ${(error as Error).message}`);
        else this.retryLater(d.msg, { event_id: d.eventId }, error);
        d.span.setStatus({ code: SpanStatusCode.ERROR });
        d.span.end();
      }
    }
  }

  /** Records one event in its own transaction: acked after the commit; dead-lettered when refused for good; nak'ed otherwise. */
  private async recordAlone(d: Decoded): Promise<void> {
    try {
      const [outcome] = await this.inRecordSpan([d], () => this.deps.usageLog.recordBatch([d.event]));
      this.acked(d, outcome!);
    } catch (error) {
      if (isPermanentDatabaseError(error)) await this.deadLetter(d.msg, `database refused the event: ${(error as Error).message}`);
      else this.retryLater(d.msg, { event_id: d.eventId }, error);
      d.span.setStatus({ code: SpanStatusCode.ERROR });
      d.span.end();
    }
  }

  /** Acks a message whose event was recorded (or was a duplicate) and ends its span. */
  private acked(d: Decoded, outcome: UsageEventOutcome): void {
    d.msg.ack();
    const where = { ...position(d.msg), event_id: d.eventId };
    if (outcome.duplicate) this.logger.info(where, "duplicate event skipped");
    else this.logger.debug({ ...where, usage_log_entry_id: outcome.entryId ?? undefined }, "event recorded");
    d.span.end();
  }

  /** Transient (database down, timeout, a deadlock) or a bug: keep the message and try again later. */
  private retryLater(msg: JsMsg, where: Record<string, unknown>, error: unknown): void {
    this.logger.warn({ ...position(msg), ...where, err: error, nak_delay_ms: this.deps.config.nakDelayMs }, "could not record event, will retry");
    msg.nak(this.deps.config.nakDelayMs);
  }

  /**
   * Runs `record` (one transaction of the chunk's events) in a span `usage.record`: a child of
   * the first message's span, linked to the others' (one transaction serves them all), so its
   * queries belong to the producer's trace. The span fails when `record` throws.
   */
  private async inRecordSpan<T>(chunk: Decoded[], record: () => Promise<T>): Promise<T> {
    const parent = trace.setSpan(context.active(), chunk[0]!.span);
    const links = chunk.slice(1).map((d) => ({ context: d.span.spanContext() }));
    const span = tracer(TRACER_NAME).startSpan("usage.record", { attributes: { "messaging.batch.message_count": chunk.length }, links }, parent);
    try {
      return await context.with(trace.setSpan(parent, span), record);
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw error;
    } finally {
      span.end();
    }
  }

  /** A CONSUMER span for `msg` whose parent is its `traceparent` header. */
  private startSpan(msg: JsMsg): Span {
    const parent = contextFromCarrier({ traceparent: header(msg, "traceparent"), tracestate: header(msg, "tracestate") });
    const attributes = {
      "messaging.system": "nats",
      "messaging.destination.name": msg.subject,
      "messaging.message.id": header(msg, "Nats-Msg-Id") ?? "",
      "messaging.nats.stream_sequence": msg.info.streamSequence,
      "messaging.nats.delivery_count": msg.info.deliveryCount,
    };
    return tracer(TRACER_NAME).startSpan(`${msg.subject} process`, { kind: SpanKind.CONSUMER, attributes }, parent);
  }

  /**
   * Decodes a message into the event to record: a completion or failure goes into the usage
   * log (and the limits), a cancellation only releases its reservation (never the usage log),
   * a download goes into the download log and the user's stats only (not billable). Throws `validation` for a message that can never be processed.
   */
  private decode(msg: JsMsg): { event: UsageEvent; eventId: string } {
    const { subjectPrefix } = this.deps.config;
    const subjects = this.subjects;
    if (msg.subject === subjects.cancelled) {
      const cancellation = decodeCancelledEvent(msg.subject, msg.data);
      return { event: { kind: "cancellation", subject: msg.subject, cancellation }, eventId: cancellation.eventId };
    }
    if (msg.subject === subjects.downloaded) {
      const download = decodeDownloadedEvent(msg.subject, msg.data);
      return { event: { kind: "download", subject: msg.subject, download }, eventId: download.eventId };
    }
    const draft = decodeGenerationEvent(subjectPrefix, msg.subject, msg.data);
    return { event: { kind: "generation", subject: msg.subject, draft }, eventId: draft.eventId };
  }

  /** Stores the message in `dead_letters`, then terminates it; naks it when it cannot be stored. */
  private async deadLetter(msg: JsMsg, reason: string): Promise<void> {
    try {
      await this.deps.deadLetters.record({
        stream: msg.info.stream,
        streamSequence: msg.info.streamSequence,
        subject: msg.subject,
        payload: msg.data,
        headers: headersOf(msg),
        error: reason,
        deliveryCount: msg.info.deliveryCount,
      });
    } catch (error) {
      this.logger.warn({ ...position(msg), err: error }, "could not store dead letter, will retry");
      msg.nak(this.deps.config.nakDelayMs);
      return;
    }
    this.logger.error({ ...position(msg), reason }, "message can never be processed: stored in dead_letters and terminated");
    msg.term(reason.slice(0, 200));
  }
}

import { nanos } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type Consumer, type JsMsg } from "@nats-io/jetstream";
import { events } from "@tally/contracts";
import { accountSubjects, ensureStream, isPermanentDatabaseError, PollingLoop, requireUuid, validationError, type Logger, type NatsConnection } from "@tally/platform";
import type { AccountDeletedEvent, ErasureService } from "../service/erasure";

/** What the consumer needs from the service's config. */
export interface AccountEventConsumerConfig {
  stream: string;
  subjectPrefix: string;
  consumerName: string;
  duplicateWindowMs: number;
  streamMaxAgeMs: number;
}

/** Messages per pull request; how long one waits, in milliseconds (bounds the stop time). */
const BATCH_SIZE = 50;
const FETCH_EXPIRES_MS = 1_000;
/** Redelivery of an unacked message, and the delay of a nak after a transient failure, in milliseconds. */
const ACK_WAIT_MS = 30_000;
const NAK_DELAY_MS = 1_000;
/** Pause between pulls when idle, and the longest back-off while pulls fail, in milliseconds. */
const PULL_PAUSE_MS = 200;
const PULL_BACKOFF_MAX_MS = 5_000;

/** Decodes an `account.deleted` message; throws `validation` for one that can never be processed. */
export function decodeAccountDeleted(data: Uint8Array): AccountDeletedEvent {
  let message: events.AccountDeleted;
  try {
    message = events.AccountDeleted.decode(data);
  } catch {
    throw validationError("undecodable AccountDeleted payload");
  }
  const invalid = (field: string) => () => validationError(`AccountDeleted.${field} must be a UUID`, { field });
  return { eventId: requireUuid(message.eventId, invalid("event_id")), accountId: requireUuid(message.accountId, invalid("account_id")) };
}

/**
 * Consumes account events from the credits stream (JetStream durable pull consumer, explicit
 * acks) and erases a deleted account's personal data (ErasureService; INV-5 consumer half:
 * the inbox row and the erasure commit together, the ack follows the commit, so a redelivery
 * is absorbed by the inbox). A transient failure is `nak`ed and comes back; a message that can
 * never be processed (unknown subject, undecodable payload, a value PostgreSQL refuses) is
 * logged at error level and terminated, so it does not hold up the messages behind it.
 */
export class AccountEventConsumer {
  private readonly loop: PollingLoop;
  private stopping = false;

  private constructor(
    private readonly consumer: Consumer,
    private readonly erasure: ErasureService,
    private readonly config: AccountEventConsumerConfig,
    private readonly logger: Logger,
  ) {
    const options = { name: "account events consumer", intervalMs: PULL_PAUSE_MS, backoffMaxMs: PULL_BACKOFF_MAX_MS, passesInARowMax: 50 };
    this.loop = new PollingLoop(options, () => this.pullOnce(), logger);
  }

  /** Ensures the stream (same settings as credits, the producer) and the durable consumer, then starts pulling. */
  static async start(nc: NatsConnection, erasure: ErasureService, config: AccountEventConsumerConfig, logger: Logger): Promise<AccountEventConsumer> {
    const subjects = accountSubjects(config.subjectPrefix);
    await ensureStream(nc, { name: config.stream, subjects: [subjects.all], duplicateWindowMs: config.duplicateWindowMs, maxAgeMs: config.streamMaxAgeMs });
    await ensureDurableConsumer(nc, config.stream, config.consumerName, subjects.all);
    const consumer = await jetstream(nc).consumers.get(config.stream, config.consumerName);
    const running = new AccountEventConsumer(consumer, erasure, config, logger.child({ component: "account-events-consumer" }));
    running.loop.start();
    return running;
  }

  /** Stops pulling; the message in hand finishes (commit, then ack). */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop.stop();
  }

  private async pullOnce(): Promise<boolean> {
    try {
      const batch = await this.consumer.fetch({ max_messages: BATCH_SIZE, expires: FETCH_EXPIRES_MS });
      for await (const msg of batch) {
        if (this.stopping) {
          msg.nak(FETCH_EXPIRES_MS);
          continue;
        }
        await this.process(msg);
      }
    } catch (error) {
      if (this.stopping) return false;
      throw error;
    }
    return true;
  }

  private async process(msg: JsMsg): Promise<void> {
    const where = { subject: msg.subject, stream_sequence: msg.info.streamSequence, delivery_count: msg.info.deliveryCount };
    if (msg.subject !== accountSubjects(this.config.subjectPrefix).deleted) return this.terminate(msg, where, "unknown account event subject");
    let event: AccountDeletedEvent;
    try {
      event = decodeAccountDeleted(msg.data);
    } catch (error) {
      return this.terminate(msg, where, (error as Error).message);
    }
    try {
      const outcome = await this.erasure.eraseAccount(msg.subject, event);
      msg.ack();
      if (outcome.duplicate) this.logger.info({ ...where, event_id: event.eventId }, "duplicate account event skipped");
      else this.logger.info({ ...where, event_id: event.eventId, account_id: event.accountId, erased_generations: outcome.erased }, "deleted account's generations erased");
    } catch (error) {
      if (isPermanentDatabaseError(error)) return this.terminate(msg, where, `database refused the event: ${(error as Error).message}`);
      this.logger.warn({ ...where, err: error, nak_delay_ms: NAK_DELAY_MS }, "could not erase account, will retry");
      msg.nak(NAK_DELAY_MS);
    }
  }

  private terminate(msg: JsMsg, where: Record<string, unknown>, reason: string): void {
    this.logger.error({ ...where, reason }, "account event can never be processed: terminated");
    msg.term(reason.slice(0, 200));
  }
}

/** Creates the durable pull consumer (explicit acks, deliver all), or updates its ack wait and filter. */
async function ensureDurableConsumer(nc: NatsConnection, stream: string, name: string, filterSubject: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const updatable = { ack_wait: nanos(ACK_WAIT_MS), filter_subject: filterSubject };
  try {
    await jsm.consumers.info(stream, name);
  } catch (error) {
    if (!/not found/i.test(String((error as Error)?.message ?? error))) throw error;
    try {
      await jsm.consumers.add(stream, { durable_name: name, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ...updatable });
      return;
    } catch (addError) {
      if (!/already (exists|in use)/i.test(String(addError))) throw addError;
    }
  }
  await jsm.consumers.update(stream, name, updatable);
}

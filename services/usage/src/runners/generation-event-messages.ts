import { nanos } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@tally/platform";
import type { UsageEvent } from "../service/usage-log";
import type { GenerationEventConsumerConfig } from "./generation-event-consumer";

/*
 * The generation events consumer's JetStream side: its durable consumer, the lane of a pulled
 * message, and what logs and dead letters keep of a message.
 */

/**
 * Creates the durable pull consumer (explicit acks, deliver all), or updates the settings that
 * may change on an existing one: `ack_wait`, redeliveries, ack-pending bound and subject filter
 * (replicas and restarts share it; its position survives them).
 */
export async function ensureDurableConsumer(nc: NatsConnection, config: GenerationEventConsumerConfig, filterSubject: string): Promise<void> {
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
 * The lane (0 .. lanes - 1) of a pulled message: by its event's user id (the last 8 hex digits
 * of the UUID, random in v4 and v7 ids alike), so one user's events share a lane; a message that
 * did not decode goes to lane 0.
 */
export function laneOf(prepared: { decoded: { event: UsageEvent } | null }, lanes: number): number {
  if (lanes <= 1 || !prepared.decoded) return 0;
  const { event } = prepared.decoded;
  const userId = event.kind === "generation" ? event.draft.userId : event.kind === "cancellation" ? event.cancellation.userId : event.download.userId;
  return Number.parseInt(userId.slice(-8), 16) % lanes;
}

/** Where a message sits, for logs. */
export function position(msg: JsMsg): Record<string, unknown> {
  return { subject: msg.subject, stream_sequence: msg.info.streamSequence, delivery_count: msg.info.deliveryCount };
}

export function header(msg: JsMsg, name: string): string | undefined {
  const value = msg.headers?.get(name);
  return value ? value : undefined;
}

export function headersOf(msg: JsMsg): Record<string, string[]> {
  const headers: Record<string, string[]> = {};
  if (msg.headers) for (const [key, values] of msg.headers) headers[key] = values;
  return headers;
}

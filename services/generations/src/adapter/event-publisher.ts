import { headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { EventPublisher, OutboxMessage, PublishResult } from "../domain/ports";

/**
 * EventPublisher on NATS JetStream: `Nats-Msg-Id` = event id (the stream drops a re-publish
 * within its duplicate window, INV-5) and the row's `traceparent` header. The whole batch is
 * published, then the PubAcks are awaited together: one round trip per batch, not per row.
 */
export class JetStreamEventPublisher implements EventPublisher {
  private readonly js: JetStreamClient;

  constructor(
    nc: NatsConnection,
    /** How long to wait for one PubAck, in milliseconds. */
    private readonly publishTimeoutMs: number,
  ) {
    this.js = jetstream(nc, { timeout: publishTimeoutMs });
  }

  async publishAll(messages: OutboxMessage[]): Promise<PublishResult[]> {
    const acks = messages.map((message) => {
      const h = headers();
      if (message.traceparent) h.set("traceparent", message.traceparent);
      return this.js.publish(message.subject, message.payload, { msgID: message.eventId, headers: h, timeout: this.publishTimeoutMs });
    });
    const settled = await Promise.allSettled(acks);
    return settled.map((result) =>
      result.status === "fulfilled" ? { acknowledged: true, duplicate: result.value.duplicate } : { acknowledged: false, error: result.reason },
    );
  }
}

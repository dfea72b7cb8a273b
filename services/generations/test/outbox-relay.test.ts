/**
 * The outbox relay on its own, against real PostgreSQL and real NATS (a stream and subject
 * prefix of this file's own): it holds no transaction or row lock while it waits for a PubAck;
 * two relays over one outbox publish every event exactly once; rows claimed by a relay that
 * died are published once the claim's lease runs out.
 */
import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import { Client } from "pg";
import type { Msg } from "@nats-io/transport-node";
import { connectNats, ensureStream, openDatabase, type NatsConnection, type Orm } from "@tally/platform";
import { createTestDatabase, eventually, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { GENERATIONS_MIGRATIONS } from "../src/adapter/migrations";
import { createGenerationsUnitOfWork } from "../src/adapter/unit-of-work";
import { JetStreamEventPublisher, OutboxRelay, type OutboxRelayOptions } from "@tally/platform";
import { silentLogger } from "./helpers";

const relayOptions = (overrides: Partial<OutboxRelayOptions> = {}): OutboxRelayOptions => ({
  pollIntervalMs: 20,
  batchSize: 5,
  retentionMs: 60 * 60 * 1000,
  pruneIntervalMs: 60 * 60 * 1000,
  backoffMaxMs: 200,
  publishTimeoutMs: 2_000,
  ...overrides,
});

describe("outbox relay", () => {
  const suffix = uniqueSuffix();
  const stream = `TEST_OUTBOX_${suffix}`.toUpperCase();
  const prefix = `test_outbox_${suffix}`;
  let database: { url: string; drop(): Promise<void> };
  let orm: Orm;
  let nc: NatsConnection;
  let db: Client;
  const relays: OutboxRelay[] = [];

  beforeAll(async () => {
    database = await createTestDatabase("generations_outbox");
    orm = await openDatabase({ url: database.url, entities: [], migrations: GENERATIONS_MIGRATIONS, logger: silentLogger() });
    nc = await connectNats(testNatsUrl(), "generations-outbox-test", silentLogger());
    await ensureStream(nc, { name: stream, subjects: [`${prefix}.events.>`], duplicateWindowMs: 2 * 60 * 1000, maxAgeMs: 10 * 60 * 1000 });
    db = new Client({ connectionString: database.url });
    await db.connect();
  }, 60_000);

  afterEach(async () => {
    await Promise.all(relays.splice(0).map((relay) => relay.stop()));
  });

  afterAll(async () => {
    await db?.end();
    if (nc) {
      await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
      await nc.close();
    }
    await orm?.close();
    await database?.drop();
  }, 30_000);

  const startRelay = (overrides: Partial<OutboxRelayOptions> = {}) => {
    const options = relayOptions(overrides);
    const relay = new OutboxRelay(createGenerationsUnitOfWork(orm), new JetStreamEventPublisher(nc, options.publishTimeoutMs), options, silentLogger());
    relays.push(relay);
    relay.start();
    return relay;
  };

  const append = async (subject: string): Promise<{ id: bigint; eventId: string }> => {
    const eventId = randomUUID();
    await createGenerationsUnitOfWork(orm).inTransaction((stores) => stores.outbox.append({ eventId, subject, payload: Buffer.from(eventId), traceparent: null }));
    const { rows } = await db.query("SELECT id FROM outbox WHERE event_id = $1", [eventId]);
    return { id: BigInt(rows[0].id), eventId };
  };

  const publishedAt = async (eventId: string): Promise<Date | null> =>
    (await db.query("SELECT published_at FROM outbox WHERE event_id = $1", [eventId])).rows[0].published_at;

  /** Every message in the stream (a fresh ordered consumer each time). */
  const readStream = async (): Promise<JsMsg[]> => {
    const consumer = await jetstream(nc).consumers.get(stream);
    const messages: JsMsg[] = [];
    for (;;) {
      const message = await consumer.next({ expires: 1_000 });
      if (!message) return messages;
      messages.push(message);
    }
  };

  it("holds no transaction or row lock while it waits for the PubAck", async () => {
    // A subject outside the stream, answered by this test (as JetStream would) only after it
    // has looked at the database while the relay waits.
    const subject = `${prefix}.probe.${uniqueSuffix()}`;
    const row = await append(subject);
    const seen: { lockable?: boolean; lockError?: string; openTransactions?: number; claimed?: boolean } = {};
    const probeThenAnswer = async (message: Msg) => {
      const probe = new Client({ connectionString: database.url });
      await probe.connect();
      try {
        await probe.query("BEGIN");
        try {
          await probe.query("SELECT id FROM outbox WHERE id = $1 FOR UPDATE NOWAIT", [row.id.toString()]);
          seen.lockable = true;
        } catch (error) {
          seen.lockable = false;
          seen.lockError = (error as Error).message;
        } finally {
          await probe.query("ROLLBACK");
        }
        const { rows } = await probe.query(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND xact_start IS NOT NULL",
        );
        seen.openTransactions = Number(rows[0].n);
        const claim = await probe.query("SELECT claimed_until > now() AS claimed FROM outbox WHERE id = $1", [row.id.toString()]);
        seen.claimed = claim.rows[0].claimed === true;
      } finally {
        await probe.end();
        message.respond(JSON.stringify({ stream: "PROBE", seq: 1 }));
      }
    };
    const subscription = nc.subscribe(subject, { callback: (_error, message) => void probeThenAnswer(message) });
    try {
      startRelay();
      await eventually(async () => ((await publishedAt(row.eventId)) ? true : undefined));
      expect(seen).toEqual({ lockable: true, openTransactions: 0, claimed: true });
      // Marking it published ended the claim.
      expect((await db.query("SELECT claimed_until FROM outbox WHERE id = $1", [row.id.toString()])).rows[0].claimed_until).toBeNull();
    } finally {
      subscription.unsubscribe();
    }
  });

  it("publishes every event exactly once with two relays over one outbox", async () => {
    const subject = `${prefix}.events.two_relays`;
    const appended = [];
    for (let i = 0; i < 60; i++) appended.push(await append(subject));
    const first = startRelay();
    const second = startRelay();
    await eventually(async () => {
      const { rows } = await db.query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL");
      return Number(rows[0].n) === 0 ? true : undefined;
    }, 20_000);

    const messages = (await readStream()).filter((m) => m.subject === subject);
    const msgIds = messages.map((m) => m.headers?.get("Nats-Msg-Id"));
    expect(new Set(msgIds).size).toBe(messages.length);
    expect([...msgIds].sort()).toEqual(appended.map((a) => a.eventId).sort());
    // No row was claimed by both: nothing published twice, nothing dropped as a duplicate.
    expect(first.stats.published + second.stats.published).toBe(appended.length);
    expect(first.stats.duplicates + second.stats.duplicates).toBe(0);
  });

  it("publishes rows claimed by a relay that died once the claim's lease runs out", async () => {
    const subject = `${prefix}.events.dead_claim`;
    const row = await append(subject);
    // As if another relay had claimed the row and died mid-publish.
    await db.query("UPDATE outbox SET claimed_until = now() + interval '1500 milliseconds' WHERE id = $1", [row.id.toString()]);
    startRelay({ publishTimeoutMs: 500 });
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(await publishedAt(row.eventId)).toBeNull();
    await eventually(async () => ((await publishedAt(row.eventId)) ? true : undefined));
    const messages = (await readStream()).filter((m) => m.subject === subject);
    expect(messages.map((m) => m.headers?.get("Nats-Msg-Id"))).toEqual([row.eventId]);
  });
});

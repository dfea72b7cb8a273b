/**
 * The outbox relay on its own, against real PostgreSQL and real NATS (a stream and subject
 * prefix of this file's own): it holds no transaction or row lock while it waits for a PubAck;
 * two relays over one outbox publish every event exactly once; rows claimed by a relay that
 * died are published once the claim's lease runs out; a relay LISTENing for the outbox
 * trigger's notification publishes at once after the commit, however long its poll, and
 * again after its LISTEN connection was cut.
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

  /** Resolves with the first message on `subject` (plain NATS subscription: a JetStream publish reaches it too), or rejects after `timeoutMs`. */
  const nextMessage = (subject: string, timeoutMs: number): Promise<Msg> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        subscription.unsubscribe();
        reject(new Error(`no message on ${subject} within ${timeoutMs} ms`));
      }, timeoutMs);
      const subscription = nc.subscribe(subject, {
        max: 1,
        callback: (_error, message) => {
          clearTimeout(timer);
          resolve(message);
        },
      });
    });

  // Far below the poll (60 s): only the notification can bring the event this soon.
  const PROMPT_MS = 10_000;

  it("publishes at once after the commit when woken by the outbox trigger's notification, with a 60 s poll", async () => {
    const relay = startRelay({ pollIntervalMs: 60_000, backoffMaxMs: 60_000, notifications: { url: database.url } });
    await eventually(async () => (relay.listening ? true : undefined));
    // The first pass ran at start; the loop now sleeps its 60 s poll.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const subject = `${prefix}.events.notified`;
    const arrived = nextMessage(subject, PROMPT_MS);
    await nc.flush();
    const row = await append(subject);
    expect((await arrived).headers?.get("Nats-Msg-Id")).toBe(row.eventId);
    await eventually(async () => ((await publishedAt(row.eventId)) ? true : undefined), PROMPT_MS);
  });

  it("listens again after its LISTEN connection is cut, and catches up at once", async () => {
    const relay = startRelay({ pollIntervalMs: 60_000, backoffMaxMs: 60_000, notifications: { url: database.url, reconnectInitialMs: 50, reconnectMaxMs: 200 } });
    await eventually(async () => (relay.listening ? true : undefined));
    const listenerPids = async () =>
      (await db.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN outbox_appended'")).rows.map((r) => r.pid as number);
    const [pid] = await eventually(async () => ((await listenerPids()).length === 1 ? listenerPids() : undefined));
    const subject = `${prefix}.events.reconnected`;
    const arrived = nextMessage(subject, PROMPT_MS);
    await nc.flush();
    await db.query("SELECT pg_terminate_backend($1)", [pid]);
    // Appended while nobody listens: the reconnection's catch-up pass publishes it.
    const row = await append(subject);
    expect((await arrived).headers?.get("Nats-Msg-Id")).toBe(row.eventId);
    await eventually(async () => ((await listenerPids()).some((other) => other !== pid) && relay.listening ? true : undefined), PROMPT_MS);
    // And it is woken by notifications again.
    const later = `${prefix}.events.after_reconnect`;
    const laterArrived = nextMessage(later, PROMPT_MS);
    await nc.flush();
    const laterRow = await append(later);
    expect((await laterArrived).headers?.get("Nats-Msg-Id")).toBe(laterRow.eventId);
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

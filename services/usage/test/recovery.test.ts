import { Client } from "pg";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { createLogger, newId, openDatabase, type Orm } from "@tally/platform";
import { eventually } from "@tally/platform/src/testing";
import { usageMigrations } from "../src/adapter/migrations";
import { decodeGenerationEvent } from "../src/adapter/event-decoding";
import { completedEvent, createUsageTestBed, failedEvent, reconcileUserStats, recordUsage, type UsageTestBed } from "./helpers";

/**
 * Crashes, restarts and outages: the usage service must count every event exactly once
 * (INV-5) and keep stats equal to the usage log (INV-6).
 */
describe("usage service across restarts, crashes and outages", () => {
  let bed: UsageTestBed;
  let orm: Orm;

  beforeAll(async () => {
    // A short ack_wait so that an unacknowledged message comes back within the test.
    bed = await createUsageTestBed("recovery", { CONSUMER_ACK_WAIT_MS: 1_500, CONSUMER_NAK_DELAY_MS: 200, DATABASE_STATEMENT_TIMEOUT_MS: 500 });
    orm = await openDatabase({ url: bed.config.DATABASE_URL, entities: [], migrations: usageMigrations, logger: createLogger("test", "silent") });
    // Create the stream and the durable consumer once, then leave the service stopped.
    await (await bed.start()).stop();
  });
  afterAll(async () => {
    await orm?.close();
    await bed?.close();
  });

  const countRows = async (sql: string, params: unknown[] = []) =>
    Number((await orm.em.fork().execute<{ n: string }[]>(sql, params))[0]!.n);
  const consumerInfo = async () => (await jetstreamManager(bed.publisher)).consumers.info(bed.config.NATS_STREAM, bed.config.NATS_CONSUMER);
  const drained = async () => {
    const info = await consumerInfo();
    return info.num_pending === 0 && info.num_ack_pending === 0 ? info : undefined;
  };

  it("catches up on events published while it was down, counting each once", async () => {
    const users = [newId(), newId(), newId()];
    const published = Array.from({ length: 60 }, (_, i) =>
      i % 5 === 0 ? failedEvent(users[i % 3]!) : completedEvent(users[i % 3]!, { credits: BigInt(i), costMicros: BigInt(i * 1_001) }),
    );
    for (const event of published) {
      if ("errorCode" in event) await bed.publishFailed(event);
      else await bed.publishCompleted(event as never);
    }
    expect((await consumerInfo()).num_pending).toBe(published.length);

    const service = await bed.start();
    try {
      await eventually(drained, 20_000);
      const inLog = `SELECT count(*) AS n FROM usage_log WHERE user_id IN (?, ?, ?)`;
      expect(await countRows(inLog, users)).toBe(published.length);
      expect(await countRows(`SELECT count(DISTINCT event_id) AS n FROM usage_log WHERE user_id IN (?, ?, ?)`, users)).toBe(published.length);
      for (const user of users) expect(await reconcileUserStats(orm, user)).toEqual([]);
      const [stats] = await orm.em
        .fork()
        .execute<{ g: string }[]>("SELECT sum(total_generations + total_failed) AS g FROM user_stats WHERE user_id IN (?, ?, ?)", users);
      expect(Number(stats!.g)).toBe(published.length);
    } finally {
      await service.stop();
    }
  });

  it("counts once an event committed by a consumer that crashed before its ack", async () => {
    const userId = newId();
    const event = completedEvent(userId, { credits: 9n, costMicros: 90_000n });
    await bed.publishCompleted(event);

    // Play the crashing replica: pull the message from the shared durable consumer, commit
    // its effects exactly as the service does, and never ack.
    const consumer = await jetstream(bed.publisher).consumers.get(bed.config.NATS_STREAM, bed.config.NATS_CONSUMER);
    const msg = await consumer.next({ expires: 5_000 });
    expect(msg).not.toBeNull();
    const outcome = await recordUsage(orm, msg!.subject, decodeGenerationEvent(bed.config.NATS_SUBJECT_PREFIX, msg!.subject, msg!.data));
    expect(outcome.kind).toBe("recorded");
    expect((await consumerInfo()).num_ack_pending).toBe(1);

    const service = await bed.start();
    try {
      // After ack_wait the server redelivers it; the inbox recognises it and the service acks
      // it (the test never acks, so a drained consumer proves the service did).
      await eventually(drained, 15_000);
      expect(await countRows("SELECT count(*) AS n FROM usage_log WHERE event_id = ?", [event.eventId])).toBe(1);
      const [stats] = await orm.em.fork().execute<{ total_generations: string; total_credits_spent: string }[]>(
        "SELECT total_generations, total_credits_spent FROM user_stats WHERE user_id = ?",
        [userId],
      );
      expect(stats).toEqual({ total_generations: "1", total_credits_spent: "9" });
      expect(await reconcileUserStats(orm, userId)).toEqual([]);
    } finally {
      await service.stop();
    }
  });

  it("retries an event while the database refuses it and records it once it is back", async () => {
    const userId = newId();
    const service = await bed.start();
    // Hold an exclusive lock on user_stats: recording times out (statement_timeout), as if the
    // database were unreachable, so the message is nak'ed and redelivered.
    const blocker = new Client({ connectionString: bed.config.DATABASE_URL });
    await blocker.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query("LOCK TABLE user_stats IN ACCESS EXCLUSIVE MODE");
      const event = failedEvent(userId);
      await bed.publishFailed(event);
      await eventually(async () => ((await consumerInfo()).num_redelivered >= 1 ? true : undefined), 15_000);
      // Several more attempts (timeout 500 ms + nak delay 200 ms each) fail the same way.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(await countRows("SELECT count(*) AS n FROM dead_letters")).toBe(0);
      expect(await countRows("SELECT count(*) AS n FROM usage_log WHERE event_id = ?", [event.eventId])).toBe(0);

      await blocker.query("ROLLBACK");
      await eventually(async () => ((await countRows("SELECT count(*) AS n FROM usage_log WHERE event_id = ?", [event.eventId])) === 1 ? true : undefined), 15_000);
      await eventually(drained, 15_000);
      expect(await countRows("SELECT count(*) AS n FROM dead_letters")).toBe(0);
      expect(await reconcileUserStats(orm, userId)).toEqual([]);
    } finally {
      await blocker.end();
      await service.stop();
    }
  });

});

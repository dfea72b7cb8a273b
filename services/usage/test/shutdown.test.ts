import { jetstreamManager } from "@nats-io/jetstream";
import { createLogger, newId, openDatabase, type Orm } from "@tally/platform";
import { eventually } from "@tally/platform/src/testing";
import { usageMigrations } from "../src/adapter/migrations";
import { completedEvent, createUsageTestBed, reconcileUserStats, type UsageTestBed } from "./helpers";

/** Graceful shutdown: stop pulling, finish the message in hand, give the rest back promptly. */
describe("usage service graceful stop", () => {
  const ackWaitMs = 30_000;
  let bed: UsageTestBed;
  let orm: Orm;

  beforeAll(async () => {
    bed = await createUsageTestBed("shutdown", { CONSUMER_ACK_WAIT_MS: ackWaitMs });
    orm = await openDatabase({ url: bed.config.DATABASE_URL, entities: [], migrations: usageMigrations, logger: createLogger("test", "silent") });
  });
  afterAll(async () => {
    await orm?.close();
    await bed?.close();
  });

  const countEntries = async (userId: string) =>
    Number((await orm.em.fork().execute<{ n: string }[]>("SELECT count(*) AS n FROM usage_log WHERE user_id = ?", [userId]))[0]!.n);

  it("commits and acks the message in hand and hands the pulled rest back without waiting for ack_wait", async () => {
    const userId = newId();
    const published = Array.from({ length: 150 }, () => completedEvent(userId, { credits: 2n, costMicros: 3n }));
    // Small pulls: a chunk of the default batch records 100 events in one transaction, which
    // could finish all 150 before the stop; with 10 a pull the stop lands mid-stream.
    const service = await bed.start({ CONSUMER_BATCH_SIZE: 10 });
    await Promise.all(published.map((event) => bed.publishCompleted(event)));
    await eventually(async () => ((await countEntries(userId)) > 0 ? true : undefined));
    await service.stop();

    // Stopped mid-stream: what was recorded is consistent, and not everything was recorded.
    const recordedBeforeStop = await countEntries(userId);
    expect(recordedBeforeStop).toBeLessThan(published.length);
    expect(await reconcileUserStats(orm, userId)).toEqual([]);

    const restartedAt = Date.now();
    const restarted = await bed.start();
    try {
      const jsm = await jetstreamManager(bed.publisher);
      await eventually(async () => {
        const info = await jsm.consumers.info(bed.config.NATS_STREAM, bed.config.NATS_CONSUMER);
        return info.num_pending === 0 && info.num_ack_pending === 0 ? true : undefined;
      }, ackWaitMs / 2);
      // Well inside ack_wait: the pulled-but-unstarted messages were nak'ed, not abandoned.
      expect(Date.now() - restartedAt).toBeLessThan(ackWaitMs / 2);
      expect(await countEntries(userId)).toBe(published.length);
      expect(await reconcileUserStats(orm)).toEqual([]);
    } finally {
      await restarted.stop();
    }
  });
});

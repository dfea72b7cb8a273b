/**
 * Benchmark: usage's ingest rate of generation events through NATS into the usage log, with a
 * batch of 1 (one transaction per event, as before batching) and with the default batch
 * (CONSUMER_BATCH_SIZE: one transaction per pulled chunk), in one run.
 *
 * For each batch size: a throw-away database and JetStream stream; the usage service is started
 * in this process once (migrations, stream, durable consumer) and stopped; BENCH_EVENTS
 * completions and failures (spread over 200 users and the last three UTC months) are published;
 * then the service is started again and timed until every event is in the usage log. Prints
 * events/s for each and the ratio, after checking that the stats and monthly analytics equal the
 * log. Environment: BENCH_EVENTS (20000) for the default batch, BENCH_EVENTS_ONE (4000) for the
 * batch of 1 (slower: fewer events keep the run under five minutes; events/s compare).
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { events } from "@tally/contracts";
import { connectNats, createLogger, generationSubjects, newId } from "@tally/platform";
import { createTestDatabase, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { startUsageService } from "../services/usage/src/app";
import { usageConfigSchema } from "../services/usage/src/config";

const EVENTS = Number(process.env.BENCH_EVENTS ?? 20_000);
const EVENTS_ONE = Number(process.env.BENCH_EVENTS_ONE ?? 4_000);
const USERS = 200;
const PUBLISH_IN_FLIGHT = 500;
const DAY_MS = 86_400_000;

/** Publishes `count` events, then times the usage service (batch `batchSize`, 0 = the default) until all are in the log. */
async function ingest(batchSize: number, count: number): Promise<{ seconds: number; perSecond: number }> {
  const database = await createTestDatabase("usage_bench_ingest");
  const suffix = uniqueSuffix();
  const config = usageConfigSchema.parse({
    DATABASE_URL: database.url,
    GRPC_HOST: "127.0.0.1",
    GRPC_PORT: "0",
    NATS_URL: testNatsUrl(),
    NATS_STREAM: `BENCH_INGEST_${suffix}`.toUpperCase(),
    NATS_USAGE_STREAM: `BENCH_INGEST_OUT_${suffix}`.toUpperCase(),
    NATS_SUBJECT_PREFIX: `bench_${suffix}`,
    NATS_CONSUMER: `usage-${suffix}`,
    CONSUMER_MAX_ACK_PENDING: String(Math.max(2_000, batchSize * 2)),
    LOG_LEVEL: "silent",
    ...(batchSize > 0 ? { CONSUMER_BATCH_SIZE: String(batchSize) } : {}),
  });
  const logger = createLogger("bench-ingest", "silent");
  const publisher = await connectNats(config.NATS_URL, "bench-ingest", logger);
  try {
    await (await startUsageService(config, logger)).stop();
    const js = jetstream(publisher);
    const subjects = generationSubjects(config.NATS_SUBJECT_PREFIX);
    const users = Array.from({ length: USERS }, () => newId());
    const now = Date.now();
    let inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const base = { eventId: newId(), occurredAt: new Date(now - (i % 90) * DAY_MS), userId: users[i % USERS]!, generationId: newId(), inputType: "photo", provider: "builtin-renderer", credits: 3n, costMicros: 1_000n, processingTimeMs: 500n, billingClassification: "", billingReason: "", parentGenerationId: "" };
      inFlight.push(
        i % 10 === 9
          ? js.publish(subjects.failed, events.GenerationFailed.encode({ ...base, errorMessage: "x", errorCode: "provider_error" }).finish(), { msgID: base.eventId })
          : js.publish(subjects.completed, events.GenerationCompleted.encode({ ...base, creditType: "paid", outputBytes: 1_024n, partialOutput: false }).finish(), { msgID: base.eventId }),
      );
      if (inFlight.length >= PUBLISH_IN_FLIGHT) {
        await Promise.all(inFlight);
        inFlight = [];
      }
    }
    await Promise.all(inFlight);

    const started = performance.now();
    const service = await startUsageService(config, logger);
    const em = () => service.orm.em.fork();
    for (;;) {
      const [row] = await em().execute<{ n: string }[]>("SELECT count(*) AS n FROM usage_log");
      if (Number(row!.n) >= count) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const seconds = (performance.now() - started) / 1000;
    const differences = (await service.services.stats.reconcile()).length + (await service.services.stats.reconcileAnalytics()).length;
    if (differences > 0) throw new Error(`derived tables differ from the log in ${differences} rows`);
    await service.stop();
    return { seconds, perSecond: count / seconds };
  } finally {
    const jsm = await jetstreamManager(publisher);
    await jsm.streams.delete(config.NATS_STREAM).catch(() => undefined);
    await jsm.streams.delete(config.NATS_USAGE_STREAM).catch(() => undefined);
    await publisher.drain();
    await database.drop();
  }
}

async function main(): Promise<void> {
  const defaultBatch = usageConfigSchema.parse({}).CONSUMER_BATCH_SIZE;
  console.log(`ingest: events through NATS into the usage log, batch 1 vs ${defaultBatch}`);
  const one = await ingest(1, EVENTS_ONE);
  console.log(`  batch 1: ${EVENTS_ONE} events in ${one.seconds.toFixed(1)} s, ${one.perSecond.toFixed(0)} events/s`);
  const batched = await ingest(0, EVENTS);
  console.log(`  batch ${defaultBatch}: ${EVENTS} events in ${batched.seconds.toFixed(1)} s, ${batched.perSecond.toFixed(0)} events/s`);
  console.log(`  ratio batched / one: ${(batched.perSecond / one.perSecond).toFixed(2)}`);
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);

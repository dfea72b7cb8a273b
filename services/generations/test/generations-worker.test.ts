/**
 * The worker and the outbox relay against real PostgreSQL, real NATS (a stream and subject
 * prefix of this file's own) and the real credits service: jobs complete with a real PNG and
 * their holds captured, fault-injected jobs fail with their credits released, and every ended
 * job reaches JetStream once with Nats-Msg-Id = event id.
 */
import { jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import { PNG } from "pngjs";
import { Client } from "pg";
import { events } from "@tally/contracts";
import { connectNats, DomainError, type NatsConnection } from "@tally/platform";
import { createTestDatabase, eventually } from "@tally/platform/src/testing";
import { startGenerationsService, type RunningGenerationsService } from "../src/app";
import type { GenerationsConfig } from "../src/config";
import { PROVIDER_ERROR_FAULT_MARKER } from "../src/providers/fault-injection-provider";
import { GenerationStatus, generationsClient, InputType, silentLogger, startCredits, startUsage, testConfig, type CreditsUnderTest, type UsageUnderTest } from "./helpers";

const TRIAL_CREDITS = 10;
const IMAGE_SIZE_PX = 96;
const ENDED = [GenerationStatus.GENERATION_STATUS_COMPLETED, GenerationStatus.GENERATION_STATUS_FAILED];

describe("generation worker and outbox relay", () => {
  let creditsService: CreditsUnderTest;
  let usageService: UsageUnderTest;
  let database: { url: string; drop(): Promise<void> };
  let config: GenerationsConfig;
  let service: RunningGenerationsService;
  let api: ReturnType<typeof generationsClient>;
  let nc: NatsConnection;

  beforeAll(async () => {
    creditsService = await startCredits(TRIAL_CREDITS);
    usageService = await startUsage();
    database = await createTestDatabase("generations_worker");
    config = testConfig(database.url, creditsService.address, usageService, {
      FAULT_INJECTION_ENABLED: "true",
      PROVIDER_IMAGE_SIZE_PX: String(IMAGE_SIZE_PX),
      // A high price so that even a tiny render has a non-zero measured cost.
      PROVIDER_COST_MICROS_PER_CPU_SECOND: "1000000000",
    });
    service = await startGenerationsService(config, silentLogger());
    api = generationsClient(service.grpcPort);
    nc = await connectNats(config.NATS_URL, "generations-worker-test", silentLogger());
  }, 60_000);

  afterAll(async () => {
    api?.close();
    await service?.stop();
    await usageService?.stop();
    if (nc) {
      await (await jetstreamManager(nc)).streams.delete(config.NATS_STREAM).catch(() => undefined);
      await nc.close();
    }
    await database?.drop();
    await creditsService?.stop();
  }, 30_000);

  const waitUntilEnded = (userId: string, id: string) =>
    eventually(async () => {
      const generation = await api.get(userId, id);
      return ENDED.includes(generation.status) ? generation : undefined;
    }, 20_000);

  it("completes a job: a real PNG, its hold captured, progress 100 and a measured cost", async () => {
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a lighthouse at dusk", style: "neon" });
    const done = await waitUntilEnded(userId, created.id);
    expect(done).toMatchObject({
      status: GenerationStatus.GENERATION_STATUS_COMPLETED,
      progressPercent: 100,
      provider: "local-fractal",
      outputContentType: "image/png",
      errorMessage: "",
    });
    expect(done.costMicros).toBeGreaterThan(0n);
    expect(done.startedAt).toBeInstanceOf(Date);
    expect(done.completedAt!.getTime()).toBeGreaterThanOrEqual(done.startedAt!.getTime());

    const output = await api.output(userId, created.id);
    expect(output.contentType).toBe("image/png");
    const png = PNG.sync.read(Buffer.from(output.content));
    expect([png.width, png.height]).toEqual([IMAGE_SIZE_PX, IMAGE_SIZE_PX]);

    // Captured: nothing held, one credit gone for good.
    expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS - 1) });

    // A finished job cannot be cancelled.
    await expect(api.cancel(userId, created.id)).rejects.toMatchObject({ reason: "already_finished" });
  });

  it("fails a fault-injected job and gives its credits back", async () => {
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_ADDRESS, address: `10 Downing St ${PROVIDER_ERROR_FAULT_MARKER}` });
    expect((await creditsService.balance(userId)).heldCredits).toBe(2n);
    const done = await waitUntilEnded(userId, created.id);
    expect(done.status).toBe(GenerationStatus.GENERATION_STATUS_FAILED);
    expect(done.errorMessage).toMatch(/fault injection/);
    expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS) });
    await expect(api.output(userId, created.id)).rejects.toBeInstanceOf(DomainError);
    await expect(api.cancel(userId, created.id)).rejects.toMatchObject({ reason: "already_finished" });
  });

  it("publishes one event per ended job with Nats-Msg-Id = event id, and the stream drops a re-publish", async () => {
    const userId = await creditsService.createAccount();
    const completed = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "events please" });
    const failed = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: `events ${PROVIDER_ERROR_FAULT_MARKER}` });
    const completedJob = await waitUntilEnded(userId, completed.id);
    await waitUntilEnded(userId, failed.id);

    const db = new Client({ connectionString: database.url });
    await db.connect();
    try {
      // Every ended job of the whole file has exactly one outbox row, and all get published.
      const endedCount = Number((await db.query("SELECT count(*) FROM generations WHERE status IN ('completed', 'failed')")).rows[0].count);
      await eventually(async () => {
        const { rows } = await db.query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL");
        return Number(rows[0].n) === 0 ? true : undefined;
      });
      expect(Number((await db.query("SELECT count(*) FROM outbox")).rows[0].count)).toBe(endedCount);

      // Read everything in the stream with a JetStream consumer.
      const readAll = async (): Promise<JsMsg[]> => {
        const consumer = await jetstream(nc).consumers.get(config.NATS_STREAM);
        const messages: JsMsg[] = [];
        for (;;) {
          const message = await consumer.next({ expires: 1_000 });
          if (!message) return messages;
          messages.push(message);
        }
      };
      const messages = await readAll();
      expect(messages).toHaveLength(endedCount);
      const bySubject = (subject: string) => messages.filter((m) => m.subject === subject);
      expect(bySubject(`${config.NATS_SUBJECT_PREFIX}.generation.completed`).length + bySubject(`${config.NATS_SUBJECT_PREFIX}.generation.failed`).length).toBe(endedCount);

      const completedMessages = bySubject(`${config.NATS_SUBJECT_PREFIX}.generation.completed`)
        .map((m) => ({ message: m, event: events.GenerationCompleted.decode(m.data) }))
        .filter(({ event }) => event.generationId === completed.id);
      expect(completedMessages).toHaveLength(1);
      const { message, event } = completedMessages[0]!;
      expect(message.headers?.get("Nats-Msg-Id")).toBe(event.eventId);
      expect(event).toMatchObject({
        userId,
        generationId: completed.id,
        inputType: "text",
        provider: "local-fractal",
        credits: 1n,
        costMicros: completedJob.costMicros,
        processingTimeMs: completedJob.processingTimeMs,
        creditType: "trial",
        outputBytes: BigInt((await api.output(userId, completed.id)).content.length),
        billingClassification: "original",
        billingReason: "",
        parentGenerationId: "",
      });
      expect(event.outputBytes).toBeGreaterThan(0n);

      const failedMessages = bySubject(`${config.NATS_SUBJECT_PREFIX}.generation.failed`)
        .map((m) => ({ message: m, event: events.GenerationFailed.decode(m.data) }))
        .filter(({ event }) => event.generationId === failed.id);
      expect(failedMessages).toHaveLength(1);
      expect(failedMessages[0]!.event).toMatchObject({ userId, credits: 1n, errorCode: "provider_error", inputType: "text", billingClassification: "original", parentGenerationId: "" });
      expect(failedMessages[0]!.message.headers?.get("Nats-Msg-Id")).toBe(failedMessages[0]!.event.eventId);

      // Re-publish a row (as after a crash between PubAck and commit): the stream drops it.
      const duplicatesBefore = service.relay.stats.duplicates;
      await db.query("UPDATE outbox SET published_at = NULL WHERE event_id = $1", [event.eventId]);
      await eventually(async () => (service.relay.stats.duplicates > duplicatesBefore ? true : undefined));
      const streamInfo = await (await jetstreamManager(nc)).streams.info(config.NATS_STREAM);
      expect(streamInfo.state.messages).toBe(endedCount);
      expect((await readAll()).length).toBe(endedCount);
    } finally {
      await db.end();
    }
  });

  it("records one generation.downloaded event per download request, and none for a retry of a request", async () => {
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "download me" });
    await waitUntilEnded(userId, created.id);
    const size = BigInt((await api.output(userId, created.id)).content.length);

    const first = await api.recordDownload(userId, created.id, "download-a");
    const retried = await api.recordDownload(userId, created.id, "download-a");
    const second = await api.recordDownload(userId, created.id, "download-b");
    expect(first).toEqual({ eventId: retried.eventId, outputBytes: size });
    expect(second.eventId).not.toBe(first.eventId);
    // Another user's generation, a missing one or one without output is not found; a request id is required.
    const other = await creditsService.createAccount();
    await expect(api.recordDownload(other, created.id)).rejects.toMatchObject({ reason: "not_found" });
    await expect(api.recordDownload(userId, "not-a-uuid")).rejects.toMatchObject({ reason: "not_found" });
    await expect(api.recordDownload(userId, created.id, "")).rejects.toMatchObject({ reason: "validation" });

    const db = new Client({ connectionString: database.url });
    await db.connect();
    try {
      const subject = `${config.NATS_SUBJECT_PREFIX}.generation.downloaded`;
      const { rows } = await db.query("SELECT event_id, subject FROM outbox WHERE subject = $1 ORDER BY id", [subject]);
      expect(rows.map((r) => r.event_id).sort()).toEqual([first.eventId, second.eventId].sort());
      await eventually(async () => {
        const pending = await db.query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL");
        return Number(pending.rows[0].n) === 0 ? true : undefined;
      });
      const consumer = await jetstream(nc).consumers.get(config.NATS_STREAM);
      const downloads: events.GenerationDownloaded[] = [];
      for (;;) {
        const message = await consumer.next({ expires: 1_000 });
        if (!message) break;
        if (message.subject === subject) downloads.push(events.GenerationDownloaded.decode(message.data));
      }
      expect(downloads.map((d) => d.eventId).sort()).toEqual([first.eventId, second.eventId].sort());
      expect(downloads[0]).toMatchObject({ userId, generationId: created.id, outputBytes: size });
    } finally {
      await db.end();
    }
  });
});

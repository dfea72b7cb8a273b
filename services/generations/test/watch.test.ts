/**
 * WatchGeneration (INV-12) against real PostgreSQL, NATS, credits and usage, with two
 * generations replicas on one database: replica A runs the worker, replica B has none and only
 * serves watches. Every change B streams therefore reached it through PostgreSQL's
 * NOTIFY/LISTEN (the fan-out every replica relies on), not through its own worker.
 */
import * as grpc from "@grpc/grpc-js";
import { Client } from "pg";
import { generations } from "@tally/contracts";
import { DomainError, fromServiceError, newId } from "@tally/platform";
import { createTestDatabase, eventually } from "@tally/platform/src/testing";
import { startGenerationsService, type RunningGenerationsService } from "../src/app";
import type { GenerationsConfig } from "../src/config";
import {
  deleteStream,
  GenerationStatus,
  generationsClient,
  InputType,
  silentLogger,
  startCredits,
  startUsage,
  testConfig,
  type CreditsUnderTest,
  type UsageUnderTest,
} from "./helpers";

const TRIAL_CREDITS = 20;
const WATCH_MAX_STREAMS = 3;

/** A watch in progress: the events so far, and how it ended (error undefined: OK). */
interface Watching {
  events: generations.WatchGenerationResponse[];
  accepted: Promise<void>;
  ended: Promise<{ error?: DomainError }>;
  call: grpc.ClientReadableStream<generations.WatchGenerationResponse>;
}

function watch(client: generations.GenerationsServiceClient, request: Partial<generations.WatchGenerationRequest>): Watching {
  const call = client.watchGeneration(generations.WatchGenerationRequest.fromPartial(request), { deadline: Date.now() + 60_000 });
  const events: generations.WatchGenerationResponse[] = [];
  call.on("data", (event: generations.WatchGenerationResponse) => events.push(event));
  const accepted = new Promise<void>((resolve) => call.on("metadata", () => resolve()));
  const ended = new Promise<{ error?: DomainError }>((resolve) => {
    call.on("error", (error: grpc.ServiceError) => resolve({ error: fromServiceError(error) }));
    call.on("end", () => resolve({}));
  });
  return { events, accepted, ended, call };
}

describe("WatchGeneration over two replicas", () => {
  let creditsService: CreditsUnderTest;
  let usageService: UsageUnderTest;
  let dropDatabase: () => Promise<void>;
  let configA: GenerationsConfig;
  let replicaA: RunningGenerationsService;
  let replicaB: RunningGenerationsService;
  let apiA: ReturnType<typeof generationsClient>;
  let apiB: ReturnType<typeof generationsClient>;

  beforeAll(async () => {
    creditsService = await startCredits(TRIAL_CREDITS);
    usageService = await startUsage();
    const database = await createTestDatabase("generations_watch");
    dropDatabase = database.drop;
    configA = testConfig(database.url, creditsService.address, usageService, { FAULT_INJECTION_ENABLED: "true", PROVIDER_IMAGE_SIZE_PX: "32" });
    replicaA = await startGenerationsService(configA, silentLogger());
    const configB = testConfig(database.url, creditsService.address, usageService, {
      WORKER_ENABLED: "false",
      ACCOUNT_EVENTS_ENABLED: "false",
      WATCH_MAX_STREAMS: String(WATCH_MAX_STREAMS),
    });
    replicaB = await startGenerationsService(configB, silentLogger());
    apiA = generationsClient(replicaA.grpcPort);
    apiB = generationsClient(replicaB.grpcPort);
  }, 90_000);

  afterAll(async () => {
    apiA?.close();
    apiB?.close();
    await replicaB?.stop();
    await replicaA?.stop();
    await usageService?.stop();
    if (configA) await deleteStream(configA);
    await dropDatabase?.();
    await creditsService?.stop();
  }, 30_000);

  const slowJob = async (userId: string, slowMs: number) =>
    apiA.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: `a lighthouse [fault:slow_ms=${slowMs}]` });

  it("streams a slow job from another replica's worker: state, rising progress, completed, then ends", async () => {
    const userId = await creditsService.createAccount();
    const job = await slowJob(userId, 1_500);
    const watching = watch(apiB.client, { userId, generationId: job.id });
    expect(await watching.ended).toEqual({});
    const { events } = watching;
    const seqs = events.map((e) => Number(e.seq));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    // The first event is the state when the watch began, with the whole generation.
    expect(events[0]!.generation?.id).toBe(job.id);
    const last = events.at(-1)!;
    expect(last.status).toBe(GenerationStatus.GENERATION_STATUS_COMPLETED);
    expect(last.progressPercent).toBe(100);
    expect(last.generation?.outputContentType).toBe("image/png");
    const progress = events.filter((e) => e.status === GenerationStatus.GENERATION_STATUS_PROCESSING).map((e) => e.progressPercent);
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress.at(-1)).toBeGreaterThan(progress[0]!);
    // Progress-only events carry no generation; changes of status do.
    const statusChanges = events.filter((e, i) => i === 0 || e.status !== events[i - 1]!.status);
    expect(statusChanges.every((e) => e.generation !== undefined)).toBe(true);
  }, 30_000);

  it("resumes after a seq with only the later changes, and ends at once for a job that has ended", async () => {
    const userId = await creditsService.createAccount();
    const job = await slowJob(userId, 1_000);
    const first = watch(apiB.client, { userId, generationId: job.id });
    await first.ended;
    const middle = first.events[Math.floor(first.events.length / 2)]!.seq;
    const terminal = first.events.at(-1)!.seq;

    const resumed = watch(apiB.client, { userId, generationId: job.id, afterSeq: middle });
    expect(await resumed.ended).toEqual({});
    // The job has ended: the only change after `middle` still to tell is its terminal state, as it is now.
    expect(resumed.events.map((e) => e.seq)).toEqual([terminal]);
    expect(resumed.events[0]!.status).toBe(GenerationStatus.GENERATION_STATUS_COMPLETED);

    const caughtUp = watch(apiB.client, { userId, generationId: job.id, afterSeq: terminal });
    expect(await caughtUp.ended).toEqual({});
    expect(caughtUp.events).toEqual([]);
  }, 30_000);

  it("resumed mid-job, sends only changes after the seq given", async () => {
    const userId = await creditsService.createAccount();
    const job = await slowJob(userId, 2_000);
    const first = watch(apiB.client, { userId, generationId: job.id });
    await eventually(async () => (first.events.filter((e) => e.progressPercent > 0).length >= 2 ? true : undefined), 10_000);
    first.call.cancel();
    const seen = first.events.at(-1)!.seq;
    const resumed = watch(apiB.client, { userId, generationId: job.id, afterSeq: seen });
    expect(await resumed.ended).toEqual({});
    expect(resumed.events.length).toBeGreaterThanOrEqual(1);
    expect(resumed.events.every((e) => e.seq > seen)).toBe(true);
    expect(resumed.events.at(-1)!.status).toBe(GenerationStatus.GENERATION_STATUS_COMPLETED);
  }, 30_000);

  it("streams a cancellation as the terminal event", async () => {
    const userId = await creditsService.createAccount();
    const job = await slowJob(userId, 20_000);
    const watching = watch(apiB.client, { userId, generationId: job.id });
    await watching.accepted;
    await apiB.cancel(userId, job.id);
    expect(await watching.ended).toEqual({});
    expect(watching.events.at(-1)!.status).toBe(GenerationStatus.GENERATION_STATUS_CANCELLED);
  }, 30_000);

  it("answers not_found for another user's, a missing or a malformed generation, validation for a negative seq", async () => {
    const userId = await creditsService.createAccount();
    const job = await slowJob(userId, 10);
    const reason = async (request: Partial<generations.WatchGenerationRequest>) => (await watch(apiB.client, request).ended).error?.reason;
    expect(await reason({ userId: newId(), generationId: job.id })).toBe("not_found");
    expect(await reason({ userId, generationId: newId() })).toBe("not_found");
    expect(await reason({ userId, generationId: "not-a-uuid" })).toBe("not_found");
    expect(await reason({ userId, generationId: job.id, afterSeq: -1n })).toBe("validation");
  }, 30_000);

  it("keeps streaming after the database drops the listening connections (reconnect, then re-read what is watched)", async () => {
    const admin = new Client({ connectionString: configA.DATABASE_URL });
    await admin.connect();
    try {
      const userId = await creditsService.createAccount();
      const job = await slowJob(userId, 3_000);
      const watching = watch(apiB.client, { userId, generationId: job.id });
      await watching.accepted;
      const listeners = async () =>
        (await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN generation_events'")).rows;
      const dropped = await listeners();
      expect(dropped.length).toBe(2);
      for (const { pid } of dropped) await admin.query("SELECT pg_terminate_backend($1)", [pid]);
      expect(await watching.ended).toEqual({});
      expect(watching.events.at(-1)!.status).toBe(GenerationStatus.GENERATION_STATUS_COMPLETED);
      const back = await eventually(async () => ((await listeners()).length === 2 ? true : undefined), 10_000);
      expect(back).toBe(true);
    } finally {
      await admin.end();
    }
  }, 30_000);

  it("ends open watches `unavailable` when a replica stops, so they never hold its graceful stop", async () => {
    const replicaC = await startGenerationsService(
      testConfig(configA.DATABASE_URL, creditsService.address, usageService, { WORKER_ENABLED: "false", ACCOUNT_EVENTS_ENABLED: "false", GRPC_SHUTDOWN_TIMEOUT_MS: "20000" }),
      silentLogger(),
    );
    const apiC = generationsClient(replicaC.grpcPort);
    try {
      const userId = await creditsService.createAccount();
      const job = await slowJob(userId, 20_000);
      const watching = watch(apiC.client, { userId, generationId: job.id });
      await watching.accepted;
      const stopping = Date.now();
      await replicaC.stop();
      // Held by the open watch, the stop would wait GRPC_SHUTDOWN_TIMEOUT_MS (20 s) before forcing it.
      expect(Date.now() - stopping).toBeLessThan(10_000);
      const { error } = await watching.ended;
      expect([error?.reason, error?.message]).toEqual(["unavailable", expect.stringContaining("stopping")]);
      await apiA.cancel(userId, job.id);
    } finally {
      apiC.close();
      await replicaC.stop();
    }
  }, 40_000);

  it("refuses a watch beyond WATCH_MAX_STREAMS with unavailable, and frees the place when a caller goes away", async () => {
    const userId = await creditsService.createAccount();
    const job = await slowJob(userId, 20_000);
    const open = Array.from({ length: WATCH_MAX_STREAMS }, () => watch(apiB.client, { userId, generationId: job.id }));
    await Promise.all(open.map((w) => w.accepted));
    const refused = await watch(apiB.client, { userId, generationId: job.id }).ended;
    expect(refused.error?.reason).toBe("unavailable");
    open[0]!.call.cancel();
    await eventually(async () => {
      const again = watch(apiB.client, { userId, generationId: job.id });
      const outcome = await Promise.race([again.accepted.then(() => "accepted"), again.ended.then(() => "ended")]);
      again.call.cancel();
      return outcome === "accepted" ? true : undefined;
    }, 10_000);
    await apiA.cancel(userId, job.id);
    for (const w of open.slice(1)) expect(await w.ended).toEqual({});
  }, 30_000);
});

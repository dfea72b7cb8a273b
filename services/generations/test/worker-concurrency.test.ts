/**
 * Two worker instances (two services on one database) over many jobs: every job runs exactly
 * once. Also the crash paths of the ending protocol: a job whose worker died mid-run (lease
 * ran out) runs again on another worker; a job that died after step 1 (settlement recorded)
 * only has its capture and finish redone; a cancel that died before its release gets its
 * release redone by the sweep.
 */
import { Client } from "pg";
import { createTestDatabase, eventually } from "@tally/platform/src/testing";
import { startGenerationsService, type RunningGenerationsService } from "../src/app";
import type { GenerationsConfig } from "../src/config";
import type { GenerationJob } from "../src/domain/types";
import { LocalFractalRenderer } from "../src/providers/local-fractal-renderer";
import type { GenerationProvider, ProviderOutput, ProviderRunContext } from "../src/providers/provider";
import {
  deleteStream,
  GenerationStatus,
  generationsClient,
  InputType,
  silentLogger,
  startCredits,
  startUsage,
  testConfig,
  writePlansFile,
  type CreditsUnderTest,
  type UsageUnderTest,
} from "./helpers";

const JOB_COUNT = 24;
const TRIAL_CREDITS = 100;
/** One user has every job pending at once here: a plan whose limits do not bite. */
const ROOMY_PLANS = {
  default_plan: "free",
  guest_plan: "guest",
  plans: { guest: { trial_credits: 3, limits: {} }, free: { trial_credits: TRIAL_CREDITS, limits: { concurrent_generations: 1_000 } } },
};

/** Test provider: counts how often each generation is run, then renders it for real. */
class InvocationCountingProvider implements GenerationProvider {
  readonly name = "local-fractal";
  readonly invocations = new Map<string, number>();
  private readonly renderer = new LocalFractalRenderer({ imageSizePx: 32, iterationsMax: 32, rowsPerChunk: 8, costMicrosPerCpuSecond: 20_000, renderThreads: 2 });

  async generate(job: GenerationJob, context: ProviderRunContext): Promise<ProviderOutput> {
    this.invocations.set(job.id, (this.invocations.get(job.id) ?? 0) + 1);
    // Long enough that both workers are busy at once.
    await new Promise((resolve) => setTimeout(resolve, 30));
    return this.renderer.generate(job, context);
  }

  close(): Promise<void> {
    return this.renderer.close();
  }
}

describe("two workers on one database", () => {
  let creditsService: CreditsUnderTest;
  let usageService: UsageUnderTest;
  let plansFile: ReturnType<typeof writePlansFile>;
  let database: { url: string; drop(): Promise<void> };
  const services: RunningGenerationsService[] = [];
  const configs: GenerationsConfig[] = [];
  let db: Client;

  beforeAll(async () => {
    plansFile = writePlansFile(ROOMY_PLANS);
    creditsService = await startCredits(TRIAL_CREDITS, { PLANS_FILE: plansFile.path });
    usageService = await startUsage({ PLANS_FILE: plansFile.path });
    database = await createTestDatabase("generations_workers");
    db = new Client({ connectionString: database.url });
  }, 60_000);

  afterAll(async () => {
    for (const service of services) await service.stop();
    await usageService?.stop();
    for (const config of configs) await deleteStream(config);
    await db?.end().catch(() => undefined);
    await database?.drop();
    await creditsService?.stop();
    plansFile?.remove();
  }, 30_000);

  it("runs every job exactly once and redoes only what a dead worker left undone", async () => {
    // Jobs are created while no worker runs, so both workers start on a full queue together.
    const creatorConfig = testConfig(database.url, creditsService.address, usageService, { WORKER_ENABLED: "false" });
    configs.push(creatorConfig);
    const creator = await startGenerationsService(creatorConfig, silentLogger());
    services.push(creator);
    await db.connect();
    const api = generationsClient(creator.grpcPort);
    try {
      const userId = await creditsService.createAccount();
      const create = (prompt: string) => api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt });
      const ids: string[] = [];
      for (let i = 0; i < JOB_COUNT; i++) ids.push((await create(`job ${i}`)).id);

      // A worker died while running this job: processing, its lease ran out.
      const diedRunning = (await create("died while running")).id;
      await db.query(
        "UPDATE generations SET status = 'processing', started_at = now(), lease_token = gen_random_uuid(), lease_expires_at = now() - interval '1 second' WHERE id = $1",
        [diedRunning],
      );
      // A worker died after step 1: the outcome and settlement are recorded, credits not yet called. (Recorded as the
      // version before refund rules did, `settlement` alone: it reads as a full capture, as it meant then.)
      const diedSettling = (await create("died while settling")).id;
      await db.query(
        `UPDATE generations SET status = 'processing', started_at = now(), provider = 'local-fractal', settlement = 'capture',
           output_content_type = 'image/png', lease_token = gen_random_uuid(), lease_expires_at = now() - interval '1 second' WHERE id = $1`,
        [diedSettling],
      );
      await db.query("INSERT INTO generation_outputs (generation_id, content_type, content) VALUES ($1, 'image/png', '\\x89504e47')", [diedSettling]);
      // A cancel died after its transaction, before releasing the hold (recorded the old way too: a full release).
      const diedCancelling = (await create("died while cancelling")).id;
      await db.query(
        "UPDATE generations SET status = 'cancelled', settlement = 'release', completed_at = now(), lease_expires_at = now() - interval '1 second' WHERE id = $1",
        [diedCancelling],
      );
      const created = JOB_COUNT + 3;
      expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: BigInt(created) });

      const provider = new InvocationCountingProvider();
      const workerConfig = () => {
        // Replicas of one deployment share the stream and subjects.
        return testConfig(database.url, creditsService.address, usageService, {
          WORKER_CONCURRENCY: "3",
          WORKER_POLL_INTERVAL_MS: "10",
          NATS_STREAM: creatorConfig.NATS_STREAM,
          NATS_SUBJECT_PREFIX: creatorConfig.NATS_SUBJECT_PREFIX,
        });
      };
      services.push(...(await Promise.all([startGenerationsService(workerConfig(), silentLogger(), { provider }), startGenerationsService(workerConfig(), silentLogger(), { provider })])));

      const runnable = [...ids, diedRunning];
      await eventually(async () => {
        const { rows } = await db.query("SELECT count(*) AS n FROM generations WHERE status IN ('completed', 'failed') OR settled_at IS NOT NULL");
        return Number(rows[0].n) === created ? true : undefined;
      }, 30_000);

      // Exactly once per runnable job, never for the one that only needed settling.
      expect([...provider.invocations.keys()].sort()).toEqual([...runnable].sort());
      expect([...provider.invocations.values()].every((count) => count === 1)).toBe(true);
      expect(provider.invocations.has(diedSettling)).toBe(false);

      const { rows } = await db.query("SELECT id, status FROM generations");
      const statusOf = new Map(rows.map((row) => [row.id as string, row.status as string]));
      for (const id of [...runnable, diedSettling]) expect(statusOf.get(id)).toBe("completed");
      expect(statusOf.get(diedCancelling)).toBe("cancelled");
      expect((await api.get(userId, diedSettling)).status).toBe(GenerationStatus.GENERATION_STATUS_COMPLETED);

      // Credits: every completed job captured once, the cancelled one released, nothing held.
      const completedCount = runnable.length + 1;
      expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS - completedCount) });
      // One event per ended job, none for the cancel.
      expect(Number((await db.query("SELECT count(*) FROM outbox")).rows[0].count)).toBe(completedCount);
    } finally {
      api.close();
    }
  });
});

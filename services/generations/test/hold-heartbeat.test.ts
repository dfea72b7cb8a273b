/**
 * Holds that live as long as their job, against the real credits and usage services and a
 * generations service run as ops run it (a child process, so it can be killed): with
 * HOLD_TTL_MS 1.5 s and WORKER_LEASE_MS 0.6 s, a job that works three times longer than the
 * hold's time to live completes and is charged (its hold extended by the worker's heartbeat,
 * with EXTENSION ledger entries); a job whose worker is SIGKILLed mid-run stops being
 * extended, and its hold expires and gives the credits back within one time to live.
 */
import { credits } from "@tally/contracts";
import { callUnary, getFreePort, spawnService, waitForGrpcServing, type ServiceProcess } from "@tally/platform";
import { createTestDatabase, eventually, testNatsUrl } from "@tally/platform/src/testing";
import { CALL_TIMEOUT_MS, GenerationStatus, generationsClient, InputType, startCredits, startUsage, type CreditsUnderTest, type UsageUnderTest } from "./helpers";

const TRIAL_CREDITS = 10;
const HOLD_TTL_MS = 1_500;
const WORKER_LEASE_MS = 600;

describe("holds that live as long as their job", () => {
  let creditsService: CreditsUnderTest;
  let usageService: UsageUnderTest;
  let database: { url: string; drop(): Promise<void> };
  let generationsProcess: ServiceProcess | undefined;
  let api: ReturnType<typeof generationsClient>;

  beforeAll(async () => {
    creditsService = await startCredits(TRIAL_CREDITS, { HOLD_EXPIRY_SWEEP_INTERVAL_MS: "100" });
    usageService = await startUsage();
    database = await createTestDatabase("generations_heartbeat");
    const port = await getFreePort();
    generationsProcess = spawnService("generations", "services/generations/main.ts", {
      DATABASE_URL: database.url,
      GRPC_HOST: "127.0.0.1",
      GRPC_PORT: String(port),
      CREDITS_GRPC_ADDRESS: creditsService.address,
      USAGE_GRPC_ADDRESS: usageService.address,
      NATS_URL: testNatsUrl(),
      NATS_STREAM: usageService.natsStream,
      NATS_SUBJECT_PREFIX: usageService.natsSubjectPrefix,
      FAULT_INJECTION_ENABLED: "true",
      HOLD_TTL_MS: String(HOLD_TTL_MS),
      WORKER_LEASE_MS: String(WORKER_LEASE_MS),
      WORKER_POLL_INTERVAL_MS: "50",
      PROVIDER_IMAGE_SIZE_PX: "32",
    });
    await waitForGrpcServing(`127.0.0.1:${port}`, 30_000);
    api = generationsClient(port);
  }, 60_000);

  afterAll(async () => {
    api?.close();
    await generationsProcess?.stop();
    await usageService?.stop();
    await database?.drop();
    await creditsService?.stop();
  }, 30_000);

  const ledgerKinds = async (accountId: string) => {
    const { entries } = await callUnary(creditsService.client.listLedgerEntries.bind(creditsService.client), { accountId, pageSize: 100, pageToken: "" }, { timeoutMs: CALL_TIMEOUT_MS });
    return entries.map((entry) => entry.kind);
  };

  it("charges a job that runs three times longer than its hold's time to live", async () => {
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: `a slow lighthouse [fault:slow_ms=${3 * HOLD_TTL_MS}]` });
    const done = await eventually(async () => {
      const generation = await api.get(userId, created.id);
      return generation.status === GenerationStatus.GENERATION_STATUS_COMPLETED || generation.status === GenerationStatus.GENERATION_STATUS_FAILED ? generation : undefined;
    }, 30_000, 100);
    expect({ status: done.status, error: done.errorMessage }).toEqual({ status: GenerationStatus.GENERATION_STATUS_COMPLETED, error: "" });
    expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS - 1) });
    const kinds = await ledgerKinds(userId);
    expect(kinds.filter((kind) => kind === credits.LedgerEntryKind.LEDGER_ENTRY_KIND_EXTENSION).length).toBeGreaterThanOrEqual(2);
    expect(kinds).toContain(credits.LedgerEntryKind.LEDGER_ENTRY_KIND_CAPTURE);
  }, 60_000);

  it("lets the hold of a job whose worker was killed expire within one time to live", async () => {
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a lighthouse that never ends [fault:slow_ms=600000]" });
    await eventually(async () => ((await api.get(userId, created.id)).status === GenerationStatus.GENERATION_STATUS_PROCESSING ? true : undefined), 20_000, 50);
    // Long enough for the heartbeat to have extended the hold at least once.
    await new Promise((resolve) => setTimeout(resolve, 2 * HOLD_TTL_MS));
    expect((await creditsService.balance(userId)).heldCredits).toBe(1n);
    await generationsProcess!.kill();
    const killedMs = Date.now();
    await eventually(async () => ((await creditsService.balance(userId)).heldCredits === 0n ? true : undefined), 10_000, 50);
    const releasedAfterMs = Date.now() - killedMs;
    // One time to live, plus the sweeper's pass and the polling here (a loaded machine adds jitter).
    expect(releasedAfterMs).toBeLessThan(HOLD_TTL_MS + 1_000);
    expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS) });
    const kinds = await ledgerKinds(userId);
    expect(kinds[0]).toBe(credits.LedgerEntryKind.LEDGER_ENTRY_KIND_EXPIRY);
    expect(kinds).toContain(credits.LedgerEntryKind.LEDGER_ENTRY_KIND_EXTENSION);
    // eslint-disable-next-line no-console
    console.log(`a killed worker's hold was released ${releasedAfterMs} ms after the kill (time to live ${HOLD_TTL_MS} ms)`);
  }, 60_000);
});

/**
 * The GenerationsService API against real PostgreSQL, real NATS and the real credits service
 * (spawned as a process), with the worker disabled so jobs stay pending.
 */
import { Client } from "pg";
import { callUnary, DomainError, newId } from "@tally/platform";
import { createTestDatabase } from "@tally/platform/src/testing";
import { startGenerationsService, type RunningGenerationsService } from "../src/app";
import type { GenerationsConfig } from "../src/config";
import {
  CALL_TIMEOUT_MS,
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

const TRIAL_CREDITS = 10;

describe("generations API (worker disabled)", () => {
  let creditsService: CreditsUnderTest;
  let usageService: UsageUnderTest;
  let dropDatabase: () => Promise<void>;
  let databaseUrl: string;
  let service: RunningGenerationsService;
  let config: GenerationsConfig;
  let api: ReturnType<typeof generationsClient>;

  beforeAll(async () => {
    creditsService = await startCredits(TRIAL_CREDITS);
    usageService = await startUsage();
    const database = await createTestDatabase("generations_api");
    dropDatabase = database.drop;
    databaseUrl = database.url;
    config = testConfig(database.url, creditsService.address, usageService, { WORKER_ENABLED: "false" });
    service = await startGenerationsService(config, silentLogger());
    api = generationsClient(service.grpcPort);
  }, 60_000);

  afterAll(async () => {
    api?.close();
    await service?.stop();
    await usageService?.stop();
    if (config) await deleteStream(config);
    await dropDatabase?.();
    await creditsService?.stop();
  }, 30_000);

  const reasonOf = async (promise: Promise<unknown>) => {
    try {
      await promise;
    } catch (error) {
      expect(error).toBeInstanceOf(DomainError);
      return { reason: (error as DomainError).reason, message: (error as DomainError).message };
    }
    throw new Error("expected the call to fail");
  };

  it("rejects invalid input with a validation error naming the field", async () => {
    const userId = newId();
    const cases: [Parameters<typeof api.create>[0], RegExp][] = [
      [{ userId: "not-a-uuid", inputType: InputType.INPUT_TYPE_TEXT, prompt: "x" }, /user_id/],
      [{ userId, inputType: InputType.INPUT_TYPE_UNSPECIFIED, prompt: "x" }, /input_type/],
      [{ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "   " }, /prompt/],
      [{ userId, inputType: InputType.INPUT_TYPE_PHOTO }, /photo_url/],
      [{ userId, inputType: InputType.INPUT_TYPE_PHOTO, photoUrl: "file:///etc/passwd" }, /photo_url/],
      [{ userId, inputType: InputType.INPUT_TYPE_ADDRESS, prompt: "x" }, /address/],
      [{ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "x".repeat(2_001) }, /prompt/],
      [{ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "x", requestId: "" }, /request_id/],
    ];
    for (const [request, field] of cases) {
      const failure = await reasonOf(api.create(request));
      expect(failure.reason).toBe("validation");
      expect(failure.message).toMatch(field);
    }
  });

  it("rejects NUL and other control characters as validation before any hold is taken", async () => {
    const userId = await creditsService.createAccount();
    const cases: [Parameters<typeof api.create>[0], RegExp][] = [
      [{ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a\u0000cat" }, /prompt/],
      [{ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a cat", style: "neon\u0000" }, /style/],
      [{ userId, inputType: InputType.INPUT_TYPE_ADDRESS, address: "1 Main St\u0000" }, /address/],
      [{ userId, inputType: InputType.INPUT_TYPE_PHOTO, photoUrl: "https://example.com/\u0000.jpg" }, /photo_url/],
      [{ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a\u001bcat" }, /prompt/],
    ];
    for (const [request, field] of cases) {
      const failure = await reasonOf(api.create(request));
      expect(failure.reason).toBe("validation");
      expect(failure.message).toMatch(field);
    }
    expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS) });
    expect((await api.list(userId)).totalSize).toBe(0);
    // Tab and line breaks are fine.
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a cat\n\ton a mat" });
    expect(created.prompt).toBe("a cat\n\ton a mat");
    // A request id is stored too (cancel's idempotency key): NUL there is validation as well.
    const cancelFailure = await reasonOf(api.cancel(userId, created.id, "cancel\u0000x"));
    expect(cancelFailure).toMatchObject({ reason: "validation", message: expect.stringMatching(/request_id/) });
  });

  it("releases the hold when the job cannot be stored after it (no job, no hold)", async () => {
    const userId = await creditsService.createAccount();
    const db = new Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      // A local failure after the hold was taken: inserting this user's generation fails.
      await db.query(`CREATE FUNCTION test_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'test: generation insert refused'; END $$`);
      await db.query(`CREATE TRIGGER test_refuse_insert BEFORE INSERT ON generations FOR EACH ROW
        WHEN (NEW.user_id = '${userId}') EXECUTE FUNCTION test_refuse_insert()`);
      await expect(api.create({ userId, inputType: InputType.INPUT_TYPE_PHOTO, photoUrl: "https://example.com/cat.jpg" })).rejects.toMatchObject({ reason: "internal" });
      expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS) });
      expect((await api.list(userId)).totalSize).toBe(0);
    } finally {
      await db.query("DROP TRIGGER IF EXISTS test_refuse_insert ON generations");
      await db.query("DROP FUNCTION IF EXISTS test_refuse_insert()");
      await db.end();
    }
  });

  it("stores no job when credits answers insufficient_credits", async () => {
    const userId = await creditsService.createAccount();
    // Hold the whole balance elsewhere so nothing is left for a generation.
    await callUnary(
      creditsService.client.createHold.bind(creditsService.client),
      { requestId: `drain-${newId()}`, accountId: userId, generationId: newId(), amount: BigInt(TRIAL_CREDITS), ttlMs: 0n },
      { timeoutMs: CALL_TIMEOUT_MS },
    );
    const failure = await reasonOf(api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a cat" }));
    expect(failure.reason).toBe("insufficient_credits");
    expect((await api.list(userId)).totalSize).toBe(0);
  });

  it("answers a retried create with the same generation and holds once", async () => {
    const userId = await creditsService.createAccount();
    const request = { requestId: `create-${newId()}`, userId, inputType: InputType.INPUT_TYPE_PHOTO, photoUrl: "https://example.com/cat.jpg" };
    const first = await api.create(request);
    const second = await api.create(request);
    expect(second).toEqual(first);
    expect(first).toMatchObject({ status: GenerationStatus.GENERATION_STATUS_PENDING, creditCost: 2n, userId });
    expect(first.holdId).not.toBe("");
    const balance = await creditsService.balance(userId);
    expect(balance).toMatchObject({ heldCredits: 2n, availableCredits: BigInt(TRIAL_CREDITS - 2) });
    expect((await api.list(userId)).totalSize).toBe(1);

    const reused = await reasonOf(api.create({ ...request, photoUrl: "https://example.com/dog.jpg" }));
    expect(reused.reason).toBe("idempotency_key_reused");
  });

  it("takes the account the caller read in this request instead of asking credits again, and refuses another user's", async () => {
    const userId = await creditsService.createAccount(); // on the default plan, "free"
    const text = { userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a lighthouse" };
    const created = await api.create({ ...text, account: { id: userId.toUpperCase(), guest: false, plan: "pro", currentPeriodStart: new Date() } });
    const db = new Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      // The job carries the plan the caller passed (credits would have said "free"): credits was not asked.
      const { rows } = await db.query("SELECT plan FROM generations WHERE id = $1", [created.id]);
      expect(rows).toEqual([{ plan: "pro" }]);
      const unread = await api.create(text);
      expect((await db.query("SELECT plan FROM generations WHERE id = $1", [unread.id])).rows).toEqual([{ plan: "free" }]);
    } finally {
      await db.end();
    }
    const cases: [NonNullable<Parameters<typeof api.create>[0]["account"]>, RegExp][] = [
      [{ id: newId(), guest: false, plan: "pro", currentPeriodStart: new Date() }, /account\.id/],
      [{ id: userId, guest: false, plan: "", currentPeriodStart: new Date() }, /account\.plan/],
      [{ id: userId, guest: false, plan: "pro" }, /account\.current_period_start/],
      // A year PostgreSQL cannot read (travels as "+010000-…") is the caller's mistake, not a database error.
      [{ id: userId, guest: false, plan: "pro", currentPeriodStart: new Date("+010000-01-01T00:00:00.000Z") }, /account\.current_period_start must fall in the years 1 to 9999/],
    ];
    for (const [account, field] of cases) {
      const failure = await reasonOf(api.create({ ...text, account }));
      expect(failure).toMatchObject({ reason: "validation", message: expect.stringMatching(field) });
    }
  });

  it("cancels a pending job, releases its credits, and refuses a second cancel", async () => {
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "to be cancelled" });
    expect((await creditsService.balance(userId)).heldCredits).toBe(1n);

    const requestId = `cancel-${newId()}`;
    const cancelled = await api.cancel(userId, created.id, requestId);
    expect(cancelled.status).toBe(GenerationStatus.GENERATION_STATUS_CANCELLED);
    expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS) });
    // The same request again answers the same; a new cancel finds it finished.
    expect(await api.cancel(userId, created.id, requestId)).toEqual(cancelled);
    expect((await reasonOf(api.cancel(userId, created.id))).reason).toBe("already_finished");
    expect((await api.get(userId, created.id)).status).toBe(GenerationStatus.GENERATION_STATUS_CANCELLED);
    expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS) });
  });

  it("answers not_found for another user's job and for malformed ids", async () => {
    const owner = await creditsService.createAccount();
    const stranger = await creditsService.createAccount();
    const created = await api.create({ userId: owner, inputType: InputType.INPUT_TYPE_ADDRESS, address: "1 Main St, Springfield" });
    expect((await api.get(owner, created.id)).address).toBe("1 Main St, Springfield");
    expect((await reasonOf(api.get(stranger, created.id))).reason).toBe("not_found");
    expect((await reasonOf(api.cancel(stranger, created.id))).reason).toBe("not_found");
    expect((await reasonOf(api.output(stranger, created.id))).reason).toBe("not_found");
    expect((await reasonOf(api.get(owner, "not-a-uuid"))).reason).toBe("not_found");
    // The owner's pending job has no output yet either.
    expect((await reasonOf(api.output(owner, created.id))).reason).toBe("not_found");
    expect((await api.list(stranger)).totalSize).toBe(0);
    // The stranger's attempt changed nothing.
    expect((await api.get(owner, created.id)).status).toBe(GenerationStatus.GENERATION_STATUS_PENDING);
  });

  it("lists newest first with limit, offset and the total", async () => {
    const userId = await creditsService.createAccount();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: `job ${i}` })).id);
    const newestFirst = [...ids].reverse();

    const firstPage = await api.list(userId, 2, 0);
    expect(firstPage.totalSize).toBe(3);
    expect(firstPage.generations.map((g) => g.id)).toEqual(newestFirst.slice(0, 2));
    const secondPage = await api.list(userId, 2, 2);
    expect(secondPage.generations.map((g) => g.id)).toEqual(newestFirst.slice(2));
    expect((await api.list(userId, 0, 0)).generations).toHaveLength(3);

    expect((await reasonOf(api.list(userId, 101, 0))).reason).toBe("validation");
    expect((await reasonOf(api.list(userId, -1, 0))).reason).toBe("validation");
    expect((await reasonOf(api.list(userId, 10, -1))).reason).toBe("validation");
  });
});

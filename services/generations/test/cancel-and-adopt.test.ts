/**
 * Cancel's GenerationCancelled event and AdoptGuestGenerations against real PostgreSQL and
 * real NATS (a stream and subject prefix of this file's own), with the service built over its
 * real stores, encoder and outbox relay, calling the real credits and usage services.
 */
import { jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import { Client } from "pg";
import { events } from "@tally/contracts";
import { callUnary, connectNats, DomainError, ensureStream, loadPlanCatalog, generationSubjects, newId, openDatabase, type NatsConnection, type Orm } from "@tally/platform";
import { createTestDatabase, eventually, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { GrpcCreditsClient } from "../src/adapter/credits-client";
import { ProtoEventEncoder } from "../src/adapter/event-encoding";
import { GENERATIONS_MIGRATIONS } from "../src/adapter/migrations";
import { createGenerationsUnitOfWork } from "../src/adapter/unit-of-work";
import { GrpcUsageClient } from "../src/adapter/usage-client";
import { JetStreamEventPublisher, OutboxRelay } from "@tally/platform";
import { GenerationsService } from "../src/service/generations";
import { HoldSettlement } from "../src/service/settlement";
import { CALL_TIMEOUT_MS, silentLogger, startCredits, startUsage, type CreditsUnderTest, type UsageUnderTest } from "./helpers";

const TRIAL_CREDITS = 10;

describe("cancel event and guest adoption", () => {
  const suffix = uniqueSuffix();
  const stream = `TEST_CANCEL_${suffix}`.toUpperCase();
  const prefix = `test_cancel_${suffix}`;
  let database: { url: string; drop(): Promise<void> };
  let orm: Orm;
  let nc: NatsConnection;
  let db: Client;
  let relay: OutboxRelay;
  let service: GenerationsService;
  let creditsService: CreditsUnderTest;
  let usageService: UsageUnderTest;
  let credits: GrpcCreditsClient;
  let usage: GrpcUsageClient;
  /** A guest account at credits (the guest plan's trial credits), as the gateway makes one. */
  const newGuest = async () => {
    const guestId = newId();
    await callUnary(creditsService.client.ensureGuestAccount.bind(creditsService.client), { guestId }, { timeoutMs: CALL_TIMEOUT_MS });
    return guestId;
  };

  beforeAll(async () => {
    database = await createTestDatabase("generations_cancel");
    orm = await openDatabase({ url: database.url, entities: [], migrations: GENERATIONS_MIGRATIONS, logger: silentLogger() });
    nc = await connectNats(testNatsUrl(), "generations-cancel-test", silentLogger());
    // The stream as the service creates it: every generation subject under the prefix.
    await ensureStream(nc, { name: stream, subjects: [generationSubjects(prefix).all], duplicateWindowMs: 2 * 60 * 1000, maxAgeMs: 10 * 60 * 1000 });
    db = new Client({ connectionString: database.url });
    await db.connect();
    const uow = createGenerationsUnitOfWork(orm);
    const encoder = new ProtoEventEncoder(prefix);
    creditsService = await startCredits(TRIAL_CREDITS);
    usageService = await startUsage();
    credits = new GrpcCreditsClient(creditsService.address, CALL_TIMEOUT_MS);
    usage = new GrpcUsageClient(usageService.address, CALL_TIMEOUT_MS);
    const logger = silentLogger();
    const options = {
      pricing: { text: 1n, photo: 2n, address: 2n },
      inputLimits: { promptLengthMax: 100, photoUrlLengthMax: 100, addressLengthMax: 100, styleLengthMax: 100 },
      holdTtlMs: 0,
      leaseMs: 60_000,
      plans: loadPlanCatalog(undefined),
    };
    service = new GenerationsService(uow, { credits, usage }, new HoldSettlement(uow, credits, encoder, logger, options.plans), options, logger, encoder);
    const relayOptions = { pollIntervalMs: 20, batchSize: 10, retentionMs: 3_600_000, pruneIntervalMs: 3_600_000, backoffMaxMs: 200, publishTimeoutMs: 2_000 };
    relay = new OutboxRelay(uow, new JetStreamEventPublisher(nc, 2_000), relayOptions, logger);
    relay.start();
  }, 60_000);

  afterAll(async () => {
    await relay?.stop();
    credits?.close();
    usage?.close();
    await creditsService?.stop();
    await usageService?.stop();
    await db?.end();
    if (nc) {
      await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
      await nc.close();
    }
    await orm?.close();
    await database?.drop();
  }, 30_000);

  const create = (userId: string, prompt = "a cat") => service.create({ requestId: `req-${newId()}`, userId, inputType: "text", prompt, photoUrl: "", address: "", style: "" });

  it("appends one GenerationCancelled per cancel, published on <prefix>.generation.cancelled", async () => {
    const userId = await creditsService.createAccount();
    const created = await create(userId);
    expect((await creditsService.balance(userId)).heldCredits).toBe(1n);
    const requestId = `cancel-${newId()}`;
    const cancelled = await service.cancel({ requestId, userId, generationId: created.id });
    expect(cancelled.status).toBe("cancelled");
    // The cancel released the job's hold at credits.
    expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS) });
    // A retried cancel answers the same and appends nothing; a new one is refused and appends nothing.
    expect(await service.cancel({ requestId, userId, generationId: created.id })).toEqual(cancelled);
    await expect(service.cancel({ requestId: `cancel-${newId()}`, userId, generationId: created.id })).rejects.toMatchObject({ reason: "already_finished" });

    const { rows } = await db.query("SELECT event_id, subject FROM outbox");
    expect(rows).toEqual([{ event_id: expect.any(String), subject: `${prefix}.generation.cancelled` }]);

    await eventually(async () => ((await db.query("SELECT 1 FROM outbox WHERE published_at IS NULL")).rowCount === 0 ? true : undefined));
    const consumer = await jetstream(nc).consumers.get(stream);
    const messages: JsMsg[] = [];
    for (let message = await consumer.next({ expires: 1_000 }); message; message = await consumer.next({ expires: 1_000 })) messages.push(message);
    expect(messages.map((m) => m.subject)).toEqual([`${prefix}.generation.cancelled`]);
    const event = events.GenerationCancelled.decode(messages[0]!.data);
    expect(event).toMatchObject({ eventId: rows[0].event_id, userId, generationId: created.id, inputType: "text", credits: 1n });
    expect(event.occurredAt).toEqual(cancelled.completedAt);
    expect(messages[0]!.headers?.get("Nats-Msg-Id")).toBe(event.eventId);
  });

  it("moves every generation of an adopted guest to the user in one step, once", async () => {
    const guestId = await newGuest();
    const userId = await creditsService.createAccount();
    const guestJobs = [await create(guestId, "guest 1"), await create(guestId, "guest 2")];
    await create(userId, "user 1");
    expect(await service.adoptGuest({ guestId, userId })).toBe(2);
    const page = await service.list({ userId, limit: 0, offset: 0 });
    expect(page.totalSize).toBe(3);
    expect(page.generations.map((g) => g.id)).toEqual(expect.arrayContaining(guestJobs.map((g) => g.id)));
    expect((await service.list({ userId: guestId, limit: 0, offset: 0 })).totalSize).toBe(0);
    // The user now owns them: reads and cancels go through the user's id.
    expect((await service.get({ userId, generationId: guestJobs[0]!.id })).userId).toBe(userId);
    await expect(service.get({ userId: guestId, generationId: guestJobs[0]!.id })).rejects.toMatchObject({ reason: "not_found" });
    // A retried adoption moves nothing and is not an error.
    expect(await service.adoptGuest({ guestId: guestId.toUpperCase(), userId })).toBe(0);
    expect((await service.list({ userId, limit: 0, offset: 0 })).totalSize).toBe(3);
  });

  it("refuses malformed or equal ids with validation naming the field", async () => {
    const id = newId();
    const fieldOf = async (guestId: string, userId: string) => {
      const error = await service.adoptGuest({ guestId, userId }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DomainError);
      expect((error as DomainError).reason).toBe("validation");
      return (error as DomainError).details.field;
    };
    expect(await fieldOf("not-a-uuid", id)).toBe("guest_id");
    expect(await fieldOf(id, "")).toBe("user_id");
    expect(await fieldOf(id, id)).toBe("guest_id");
  });
});

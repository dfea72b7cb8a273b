/**
 * The account events consumer and the erasure it runs, against real PostgreSQL and real NATS
 * (a stream and subject prefix of this file's own): an `account.deleted` event erases the
 * prompts, photo URLs, addresses, styles, outputs and stored answers of that account's
 * generations and keeps every fact (ids, statuses, credits, costs, timestamps); other accounts
 * are untouched; the same event id delivered again changes nothing (inbox, INV-5); a message
 * that can never be processed is terminated without holding up the ones behind it.
 */
import { headers as natsHeaders } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Client } from "pg";
import { events } from "@tally/contracts";
import { accountSubjects, connectNats, defaultAccountStream, newId, openDatabase, type NatsConnection, type Orm } from "@tally/platform";
import { createTestDatabase, eventually, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { GENERATIONS_MIGRATIONS } from "../src/adapter/migrations";
import { createGenerationsUnitOfWork } from "../src/adapter/unit-of-work";
import { AccountEventConsumer } from "../src/runners/account-event-consumer";
import { ErasureService } from "../src/service/erasure";
import { silentLogger } from "./helpers";

const FACT_COLUMNS = "id, user_id, status, input_type, credit_cost, credit_type, hold_id, provider, cost_micros, processing_time_ms, settlement, created_at, completed_at";

describe("account.deleted erasure in generations (real PostgreSQL, NATS)", () => {
  const prefix = `test_erasure_${uniqueSuffix()}`;
  const stream = defaultAccountStream(prefix);
  let database: { url: string; drop(): Promise<void> };
  let orm: Orm;
  let nc: NatsConnection;
  let db: Client;
  let consumer: AccountEventConsumer;

  beforeAll(async () => {
    database = await createTestDatabase("generations_erasure");
    orm = await openDatabase({ url: database.url, entities: [], migrations: GENERATIONS_MIGRATIONS, logger: silentLogger() });
    nc = await connectNats(testNatsUrl(), "generations-erasure-test", silentLogger());
    db = new Client({ connectionString: database.url });
    await db.connect();
    const config = { stream, subjectPrefix: prefix, consumerName: `erasure_${uniqueSuffix()}`, duplicateWindowMs: 2 * 60 * 1000, streamMaxAgeMs: 10 * 60 * 1000 };
    consumer = await AccountEventConsumer.start(nc, new ErasureService(createGenerationsUnitOfWork(orm)), config, silentLogger());
  }, 60_000);

  afterAll(async () => {
    await consumer?.stop();
    await db?.end();
    if (nc) {
      await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
      await nc.close();
    }
    await orm?.close();
    await database?.drop();
  }, 30_000);

  /** A finished generation of `userId` with personal inputs (and an output when completed), as the worker leaves one. */
  const insertGeneration = async (userId: string, status: "completed" | "failed", inputs: { prompt?: string; photoUrl?: string; address?: string; style?: string }) => {
    const id = newId();
    await db.query(
      `INSERT INTO generations (id, user_id, status, input_type, prompt, photo_url, address, style, credit_cost, credit_type, hold_id,
         provider, cost_micros, processing_time_ms, settlement, settlement_outcome, settlement_rule, credits_captured, credits_released, settled_at, completed_at)
       VALUES ($1, $2, $3, 'text', $4, $5, $6, $7, 2, 'trial', $8, 'local-fractal', 1234, 56, $9,
               CASE WHEN $3 = 'completed' THEN 'completed' ELSE 'failed' END, $9,
               CASE WHEN $3 = 'completed' THEN 2 ELSE 0 END, CASE WHEN $3 = 'completed' THEN 0 ELSE 2 END, now(), now())`,
      [id, userId, status, inputs.prompt ?? "", inputs.photoUrl ?? "", inputs.address ?? "", inputs.style ?? "", newId(), status === "completed" ? "capture" : "release"],
    );
    if (status === "completed") await db.query("INSERT INTO generation_outputs (generation_id, content_type, content) VALUES ($1, 'image/png', $2)", [id, Buffer.from("png bytes")]);
    // The stored answer of its CreateGeneration (it carries the inputs).
    await db.query("INSERT INTO idempotency_keys (request_id, operation, request_fingerprint, response) VALUES ($1, 'CreateGeneration', 'f', $2)", [
      newId(),
      Buffer.from(JSON.stringify({ id, userId, prompt: inputs.prompt ?? "" })),
    ]);
    return id;
  };

  /** Publishes an event on the stream; `msgId` defaults to the event id (as the credits outbox does). */
  const publish = async (subject: string, payload: Uint8Array, msgId: string) => {
    const h = natsHeaders();
    await jetstream(nc).publish(subject, payload, { msgID: msgId, headers: h });
  };
  const accountDeleted = (eventId: string, accountId: string) => events.AccountDeleted.encode({ eventId, occurredAt: new Date(), accountId }).finish();

  it("erases the account's personal data once, keeps its facts and leaves other accounts alone", async () => {
    const [alice, bob] = [newId(), newId()];
    const aliceIds = [
      await insertGeneration(alice, "completed", { prompt: "alice's lighthouse", style: "watercolor" }),
      await insertGeneration(alice, "completed", { photoUrl: "https://example.com/alice.jpg" }),
      await insertGeneration(alice, "failed", { address: "12 Private Lane" }),
    ];
    const bobId = await insertGeneration(bob, "completed", { prompt: "bob's garden" });
    const facts = async (userId: string) => (await db.query(`SELECT ${FACT_COLUMNS} FROM generations WHERE user_id = $1 ORDER BY id`, [userId])).rows;
    const aliceFactsBefore = await facts(alice);
    const bobBefore = (await db.query("SELECT * FROM generations WHERE id = $1", [bobId])).rows;

    // A poison message first: it must not hold up the event behind it.
    await publish(accountSubjects(prefix).deleted, Buffer.from("not a protobuf message at all"), newId());
    const eventId = newId();
    await publish(accountSubjects(prefix).deleted, accountDeleted(eventId, alice), eventId);

    await eventually(async () => {
      const { rows } = await db.query("SELECT count(*) AS n FROM generations WHERE user_id = $1 AND erased_at IS NOT NULL", [alice]);
      return rows[0].n === "3" ? true : undefined;
    });
    const { rows: left } = await db.query(
      "SELECT id FROM generations WHERE user_id = $1 AND (prompt <> '' OR photo_url <> '' OR address <> '' OR style <> '')",
      [alice],
    );
    expect(left).toEqual([]);
    const { rows: outputs } = await db.query("SELECT generation_id FROM generation_outputs WHERE generation_id = ANY($1::uuid[])", [aliceIds]);
    expect(outputs).toEqual([]);
    const { rows: answers } = await db.query("SELECT request_id FROM idempotency_keys WHERE position(convert_to($1, 'UTF8') in response) > 0", [alice]);
    expect(answers).toEqual([]);
    expect(await facts(alice)).toEqual(aliceFactsBefore);
    // Bob: untouched, answer and output included.
    expect((await db.query("SELECT * FROM generations WHERE id = $1", [bobId])).rows).toEqual(bobBefore);
    expect((await db.query("SELECT count(*) AS n FROM generation_outputs WHERE generation_id = $1", [bobId])).rows[0].n).toBe("1");
    expect((await db.query("SELECT count(*) AS n FROM idempotency_keys WHERE position(convert_to($1, 'UTF8') in response) > 0", [bob])).rows[0].n).toBe("1");

    // The same event id again (a new message id, so the stream keeps it): the inbox absorbs it.
    // A row written after the first erasure tells: a second erasure would blank it.
    const late = await insertGeneration(alice, "failed", { prompt: "written after the erasure" });
    await publish(accountSubjects(prefix).deleted, accountDeleted(eventId, alice), newId());
    // A later, different event is processed after it, so once that one is done the duplicate was handled.
    const marker = newId();
    await publish(accountSubjects(prefix).deleted, accountDeleted(marker, newId()), marker);
    await eventually(async () => {
      const { rows } = await db.query("SELECT 1 FROM processed_events WHERE event_id = $1", [marker]);
      return rows.length === 1 ? true : undefined;
    });
    expect((await db.query("SELECT prompt FROM generations WHERE id = $1", [late])).rows[0].prompt).toBe("written after the erasure");
    expect((await db.query("SELECT count(*) AS n FROM processed_events WHERE event_id = $1", [eventId])).rows[0].n).toBe("1");
  });
});

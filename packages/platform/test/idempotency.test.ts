import { Migration } from "@mikro-orm/migrations";
import { createLogger, DomainError, IDEMPOTENCY_TABLE_SQL, openDatabase, runIdempotent, Sql, SqlIdempotencyStore, type Orm } from "../src";
import { createTestDatabase } from "../src/testing";

class CreateIdempotencyKeys extends Migration {
  async up(): Promise<void> {
    this.addSql(IDEMPOTENCY_TABLE_SQL);
    this.addSql("CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL)");
    this.addSql("INSERT INTO counters VALUES (1, 0)");
  }
}

const text = { encode: (s: string) => Buffer.from(s), decode: (b: Uint8Array) => Buffer.from(b).toString() };

describe("runIdempotent against PostgreSQL", () => {
  let orm: Orm;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const db = await createTestDatabase("platform");
    drop = db.drop;
    orm = await openDatabase({
      url: db.url,
      entities: [],
      migrations: [{ name: "Migration00000000000001", class: CreateIdempotencyKeys }],
      logger: createLogger("test", "silent"),
    });
  });
  afterAll(async () => {
    await orm.close();
    await drop();
  });

  const increment = (requestId: string, by: number) =>
    orm.em.fork().transactional((em) =>
      runIdempotent(new SqlIdempotencyStore(new Sql(em)), { requestId, operation: "Increment", parameters: { by }, ...text }, async () => {
        const [row] = await em.execute<{ value: number }[]>("UPDATE counters SET value = value + ? WHERE id = 1 RETURNING value", [by]);
        return String(row!.value);
      }),
    );
  const counter = async () => (await orm.em.fork().execute<{ value: number }[]>("SELECT value FROM counters"))[0]!.value;

  it("returns the first answer to a retry and moves nothing", async () => {
    const before = await counter();
    const first = await increment("key-a", 5);
    const second = await increment("key-a", 5);
    expect(second).toBe(first);
    expect(await counter()).toBe(before + 5);
  });

  it("rejects the same key with different parameters", async () => {
    await increment("key-b", 1);
    await expect(increment("key-b", 2)).rejects.toMatchObject({ reason: "idempotency_key_reused" });
  });

  it("applies a key once under concurrent retries", async () => {
    const before = await counter();
    const answers = await Promise.all(Array.from({ length: 10 }, () => increment("key-c", 3)));
    expect(new Set(answers).size).toBe(1);
    expect(await counter()).toBe(before + 3);
  });

  it("frees the key when the effect fails", async () => {
    const failing = orm.em.fork().transactional((em) =>
      runIdempotent(new SqlIdempotencyStore(new Sql(em)), { requestId: "key-d", operation: "Fail", parameters: {}, ...text }, async () => {
        throw new DomainError("validation", "nope");
      }),
    );
    await expect(failing).rejects.toBeInstanceOf(DomainError);
    const retried = await orm.em.fork().transactional((em) =>
      runIdempotent(new SqlIdempotencyStore(new Sql(em)), { requestId: "key-d", operation: "Fail", parameters: {}, ...text }, async () => "ok"),
    );
    expect(retried).toBe("ok");
  });

  it("requires a request_id", async () => {
    await expect(increment("", 1)).rejects.toMatchObject({ reason: "validation" });
  });
});

describe("request_id validation", () => {
  it("refuses control characters before they reach the database", async () => {
    const em = { execute: jest.fn() } as never;
    await expect(
      runIdempotent(new SqlIdempotencyStore(new Sql(em)), { requestId: "a\u0000b", operation: "X", parameters: {}, encode: () => new Uint8Array(), decode: () => "" }, async () => ""),
    ).rejects.toMatchObject({ reason: "validation" });
  });
});

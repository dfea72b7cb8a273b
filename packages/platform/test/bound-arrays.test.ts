import { arrayLiteral, createLogger, openDatabase, Sql, type Orm } from "../src";
import { createTestDatabase } from "../src/testing";

/** `Sql.bound` sends an array as one array literal (`arrayLiteral`): every value comes back from PostgreSQL as it was sent. */
describe("Sql.bound arrays against PostgreSQL", () => {
  let orm: Orm;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const db = await createTestDatabase("platform_arrays");
    drop = db.drop;
    orm = await openDatabase({ url: db.url, entities: [], migrations: [], logger: createLogger("test", "silent") });
  });
  afterAll(async () => {
    await orm.close();
    await drop();
  });

  const roundTrip = async <T>(type: string, values: readonly (string | number | bigint | boolean | Date | null)[]) => {
    const rows = await new Sql(orm.em.fork()).bound<{ v: T; n: string }>({ text: `SELECT v, n FROM unnest($1::${type}[]) WITH ORDINALITY AS x (v, n) ORDER BY n` }, [values]);
    expect(rows.map((r) => Number(r.n))).toEqual(values.map((_, i) => i + 1));
    return rows.map((r) => r.v);
  };

  it("keeps text exactly: quotes, backslashes, commas, braces, spaces, NULL as a word, empty, unicode, newlines; null as null", async () => {
    const values = ['say "hi"', "back\\slash", "a,b", "{x}", " padded ", "NULL", "null", "", "ünïcödé ✓", "two\nlines", 'both \\" at once', null];
    expect(await roundTrip<string | null>("text", values)).toEqual(values);
  });

  it("keeps uuids, bigints past 2^53, numbers, booleans, timestamps to the millisecond and JSON text", async () => {
    expect(await roundTrip<string>("uuid", ["00000000-0000-4000-a000-000000000001", "0193b3f1-7d2c-7c4e-9a8b-1c2d3e4f5a6b"])).toEqual([
      "00000000-0000-4000-a000-000000000001",
      "0193b3f1-7d2c-7c4e-9a8b-1c2d3e4f5a6b",
    ]);
    expect(await roundTrip<string>("bigint", [9_007_199_254_740_993n, -5n, 0n, null])).toEqual(["9007199254740993", "-5", "0", null]);
    expect(await roundTrip<number>("integer", [1, -2, 0])).toEqual([1, -2, 0]);
    expect(await roundTrip<boolean>("boolean", [true, false, null])).toEqual([true, false, null]);
    const at = [new Date("2026-12-06T12:34:56.789Z"), new Date("1999-01-01T00:00:00.001Z")];
    expect((await roundTrip<Date | string>("timestamptz", at)).map((d) => new Date(d).toISOString())).toEqual(at.map((d) => d.toISOString()));
    const json = [JSON.stringify({ text: { completed: 1, failed: 0 }, 'q"uote': "back\\slash" }), JSON.stringify(["pro"])];
    expect(await roundTrip<unknown>("jsonb", json)).toEqual(json.map((j) => JSON.parse(j)));
    expect(await roundTrip<string>("text", [])).toEqual([]);
  });

  it("builds the literal in one string, and leaves bytes to the driver", () => {
    expect(arrayLiteral(["a", null, 'q"', 1n, 2, true, new Date("2026-01-01T00:00:00Z")])).toBe('{"a",NULL,"q\\"",1,2,true,2026-01-01T00:00:00.000Z}');
    expect(arrayLiteral([Buffer.from("x")])).toBeNull();
  });
});

import { MikroORM, PostgreSqlDriver, type EntityManager, type Knex, type Options } from "@mikro-orm/postgresql";
import { Migrator, type Migration } from "@mikro-orm/migrations";
import type { EntitySchema } from "@mikro-orm/core";
import { Client } from "pg";
import type { IdempotencyClaim, IdempotencyStore } from "./idempotency";
import type { Logger } from "./logger";
import type { UnitOfWork } from "./unit-of-work";

export type Orm = MikroORM;

/** Pool and statement limits; every one a named config value. */
export interface DatabaseLimits {
  /** Most connections the pool opens. */
  poolMax: number;
  /** Longest a statement may run before PostgreSQL cancels it, in milliseconds. */
  statementTimeoutMs: number;
}

export const DEFAULT_DATABASE_LIMITS: DatabaseLimits = { poolMax: 10, statementTimeoutMs: 15_000 };

/** Splits a PostgreSQL URL into the server URL (database `postgres`) and the database name. */
export function parseDatabaseUrl(url: string): { serverUrl: string; database: string } {
  const parsed = new URL(url);
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, "")) || "postgres";
  parsed.pathname = "/postgres";
  return { serverUrl: parsed.toString(), database };
}

/** Returns `url` pointing at database `database` on the same server. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

const quoteIdentifier = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** Creates the database named in `url` when it does not exist yet (safe to race). */
export async function ensureDatabase(url: string): Promise<void> {
  const { serverUrl, database } = parseDatabaseUrl(url);
  const client = new Client({ connectionString: serverUrl });
  await client.connect();
  try {
    const existing = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
    if (existing.rowCount === 0) {
      try {
        await client.query(`CREATE DATABASE ${quoteIdentifier(database)}`);
      } catch (error) {
        // 42P04 duplicate_database: another process created it between our check and create.
        if ((error as { code?: string }).code !== "42P04") throw error;
      }
    }
  } finally {
    await client.end();
  }
}

/** Drops the database named in `url` (for tests), ending its other connections first. */
export async function dropDatabase(url: string): Promise<void> {
  const { serverUrl, database } = parseDatabaseUrl(url);
  const client = new Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdentifier(database)} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

export interface MigrationEntry {
  name: string;
  class: new (...args: never[]) => Migration;
}

export interface OpenDatabaseOptions {
  url: string;
  entities: EntitySchema<any, any>[];
  migrations: MigrationEntry[];
  logger: Logger;
  limits?: Partial<DatabaseLimits>;
  /** Run pending migrations before returning (default true). */
  migrate?: boolean;
}

/** Advisory lock key that serialises migrations of one database across replicas. */
const MIGRATION_LOCK_KEY = 0x7a11_7001;

/**
 * Creates the database if needed, opens a MikroORM instance on it and runs pending
 * migrations under an advisory lock, so replicas starting together migrate once.
 * Fork `orm.em` per request, message and batch: the global one must not hold state.
 */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Orm> {
  const limits = { ...DEFAULT_DATABASE_LIMITS, ...options.limits };
  await ensureDatabase(options.url);
  const config: Options = {
    driver: PostgreSqlDriver,
    clientUrl: options.url,
    entities: options.entities,
    discovery: { warnWhenNoEntities: false },
    extensions: [Migrator],
    migrations: {
      migrationsList: options.migrations as never,
      transactional: true,
      allOrNothing: true,
      snapshot: false,
    },
    pool: { min: 0, max: limits.poolMax },
    driverOptions: { connection: { statement_timeout: limits.statementTimeoutMs } },
    allowGlobalContext: false,
    debug: false,
    logger: (message) => options.logger.debug({ orm: message }),
  };
  const orm = await MikroORM.init(config);
  if (options.migrate !== false) await migrate(orm, options.url, options.logger);
  return orm;
}

async function migrate(orm: Orm, url: string, logger: Logger): Promise<void> {
  const lock = new Client({ connectionString: url });
  await lock.connect();
  try {
    await lock.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    const applied = await orm.getMigrator().up();
    if (applied.length > 0) logger.info({ migrations: applied.map((m) => m.name) }, "applied migrations");
  } finally {
    await lock.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await lock.end();
  }
}

/** A value a statement takes: bigints and dates are sent as text with an explicit cast in the SQL. */
export type SqlParam = string | number | bigint | boolean | Date | Uint8Array | null;

/** A value `Sql.query` takes: no bytes, which would be inlined into the statement text as hex (they go through `Sql.bound`). */
export type QueryParam = Exclude<SqlParam, Uint8Array>;

/**
 * Where an adapter runs SQL: one EntityManager fork, inside a transaction or not. `?` marks a
 * parameter (MikroORM inlines them into the statement text, so a statement must contain no
 * literal question mark); bigints travel as decimal strings and dates as ISO strings, so cast
 * them in the SQL (`?::bigint`, `?::timestamptz`). Bytes are refused here: a Uint8Array would
 * be inlined as a hex literal twice its size; write them with `bound` (bind parameters).
 */
export class Sql {
  constructor(private readonly em: EntityManager) {}

  /** Runs `statement` and returns its rows (empty for a statement that returns none). Throws a TypeError for a Uint8Array parameter. */
  query<Row>(statement: string, params: readonly QueryParam[] = []): Promise<Row[]> {
    const prepared = params.map((p: SqlParam) => {
      if (p instanceof Uint8Array) throw new TypeError("Sql.query inlines its parameters into the statement text: pass bytes to Sql.bound");
      return typeof p === "bigint" ? p.toString() : p instanceof Date ? p.toISOString() : p;
    });
    return this.em.execute<Row[]>(statement, prepared);
  }

  /** The first row of `statement`, or null when it returns none. */
  async one<Row>(statement: string, params: readonly QueryParam[] = []): Promise<Row | null> {
    const [row] = await this.query<Row>(statement, params);
    return row ?? null;
  }

  /**
   * Runs `statement.text` (`$1`, `$2`… placeholders) straight on the `pg` connection with
   * `params` sent as bind parameters, never inlined: arrays travel as arrays (`$1::uuid[]`), so
   * a batch of any size is one short statement text that PostgreSQL parses once. With a
   * `statement.name` it is a named prepared statement, parsed and planned once per connection
   * (one name must always carry one text). Inside a transaction it runs on the transaction's
   * connection; outside, on a pooled one. Errors are pg's `DatabaseError` (with its SQLSTATE).
   */
  async bound<Row>(statement: { name?: string; text: string }, params: readonly BoundParam[]): Promise<Row[]> {
    const prepared = params.map(toBound);
    const trx = this.em.getTransactionContext<Knex.Transaction>();
    const client = (trx ?? this.em.getKnex()).client as KnexClient;
    const connection = await client.acquireConnection();
    try {
      const result = await connection.query({ name: statement.name, text: statement.text, values: prepared });
      return result.rows as Row[];
    } finally {
      await client.releaseConnection(connection);
    }
  }
}

/** A bind parameter of `Sql.bound`: a value, or an array of values (a PostgreSQL array). */
export type BoundParam = SqlParam | readonly SqlParam[];

/**
 * How `Sql.bound` sends a value: bigints as decimal text, dates as ISO text, bytes as a Buffer;
 * an array as one PostgreSQL array literal (`arrayLiteral`), or element by element when it
 * holds bytes.
 */
export function toBound(value: BoundParam): unknown {
  if (Array.isArray(value)) return arrayLiteral(value) ?? value.map(toBound);
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value);
  return value;
}

/**
 * The text form of a one-dimensional PostgreSQL array of `values` (what `$1::uuid[]` and the
 * like parse): `NULL` for null, every string double-quoted with `"` and `\` escaped (so commas,
 * braces, spaces and the word NULL stay text), numbers and bigints in decimal, booleans as
 * true / false, dates as ISO text. Null when an element is bytes (pg's own encoding then). A
 * batch's arrays go out as one string each, built in one pass, rather than escaped element by
 * element in the driver (the consumer sends tens of thousands of elements per chunk).
 */
export function arrayLiteral(values: readonly SqlParam[]): string | null {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) parts[i] = "NULL";
    else if (typeof v === "string") parts[i] = v.includes('"') || v.includes("\\") ? `"${v.replace(/["\\]/g, "\\$&")}"` : `"${v}"`;
    else if (typeof v === "bigint" || typeof v === "number") parts[i] = String(v);
    else if (typeof v === "boolean") parts[i] = v ? "true" : "false";
    else if (v instanceof Date) parts[i] = v.toISOString();
    else return null;
  }
  return `{${parts.join(",")}}`;
}

/** The part of knex's client `Sql.bound` uses: a transaction's client always hands out the transaction's connection. */
interface KnexClient {
  acquireConnection(): Promise<Client>;
  releaseConnection(connection: Client): Promise<unknown>;
}

/** The idempotency store on `idempotency_keys` (IDEMPOTENCY_TABLE_SQL), bound to one transaction. */
export class SqlIdempotencyStore implements IdempotencyStore {
  constructor(private readonly sql: Sql) {}

  async claim(requestId: string, operation: string, requestFingerprint: string): Promise<IdempotencyClaim> {
    const inserted = await this.sql.query(
      `INSERT INTO idempotency_keys (request_id, operation, request_fingerprint) VALUES (?, ?, ?)
       ON CONFLICT (request_id) DO NOTHING RETURNING request_id`,
      [requestId, operation, requestFingerprint],
    );
    if (inserted.length > 0) return { claimed: true };
    const existing = await this.sql.one<{ request_fingerprint: string; response: Buffer | null }>(
      "SELECT request_fingerprint, response FROM idempotency_keys WHERE request_id = ?",
      [requestId],
    );
    // The key row is never deleted while its transaction could still be retried: it exists.
    return { claimed: false, requestFingerprint: existing?.request_fingerprint ?? "", response: existing?.response ? new Uint8Array(existing.response) : null };
  }

  /** The answer's bytes travel as a bind parameter (`Sql.bound`), never inlined into the statement text. */
  async saveResponse(requestId: string, response: Uint8Array): Promise<void> {
    await this.sql.bound({ name: "idempotency_save_response", text: "UPDATE idempotency_keys SET response = $1 WHERE request_id = $2" }, [response, requestId]);
  }
}

/**
 * A UnitOfWork over `orm`: each call forks the EntityManager (never the global one), and
 * `bind` builds the service's stores on the fork's `Sql`, inside a transaction or not.
 */
export function createUnitOfWork<Stores>(orm: Orm, bind: (sql: Sql) => Stores): UnitOfWork<Stores> {
  return {
    inTransaction: (work) => orm.em.fork().transactional((em) => work(bind(new Sql(em as EntityManager)))),
    withoutTransaction: (work) => work(bind(new Sql(orm.em.fork() as EntityManager))),
  };
}

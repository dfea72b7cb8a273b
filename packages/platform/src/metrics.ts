import http from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Orm } from "./db";
import type { Logger } from "./logger";

/** RPC duration buckets, in seconds. */
const RPC_DURATION_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * One service's Prometheus metrics: its own registry (so several services in one process, as in
 * tests, never collide) with Node's default process metrics, and what `bindService` records of
 * every RPC: `grpc_server_handled_total{service, method, code}` and
 * `grpc_server_handling_seconds{service, method}`.
 */
export class ServiceMetrics {
  readonly registry = new Registry();
  private readonly handled: Counter<"service" | "method" | "code">;
  private readonly handling: Histogram<"service" | "method">;

  constructor(readonly service: string) {
    this.registry.setDefaultLabels({ tally_service: service });
    collectDefaultMetrics({ register: this.registry });
    this.handled = new Counter({
      name: "grpc_server_handled_total",
      help: "RPCs answered, by service, method and gRPC status code (OK, INVALID_ARGUMENT, …)",
      labelNames: ["service", "method", "code"],
      registers: [this.registry],
    });
    this.handling = new Histogram({
      name: "grpc_server_handling_seconds",
      help: "RPC handling time in seconds, by service and method",
      labelNames: ["service", "method"],
      buckets: RPC_DURATION_BUCKETS_SECONDS,
      registers: [this.registry],
    });
  }

  /** Records one answered RPC: its gRPC status code name and how long it took, in seconds. */
  recordRpc(service: string, method: string, code: string, seconds: number): void {
    this.handled.inc({ service, method, code });
    this.handling.observe({ service, method }, seconds);
  }

  /**
   * A gauge read at scrape time: `collect` answers one value, or one value per label set (for
   * example jobs by status from one GROUP BY). A failing read is logged and leaves the gauge
   * empty for that scrape, so one slow or broken query never breaks the scrape.
   */
  gauge<L extends string>(options: {
    name: string;
    help: string;
    labelNames?: readonly L[];
    collect: () => Promise<number | { labels: Record<L, string>; value: number }[]>;
    logger: Logger;
  }): void {
    const { collect, logger } = options;
    new Gauge<L>({
      name: options.name,
      help: options.help,
      labelNames: options.labelNames ?? [],
      registers: [this.registry],
      async collect() {
        this.reset();
        try {
          const value = await collect();
          if (typeof value === "number") (this as Gauge<string>).set(value);
          else for (const entry of value) this.set(entry.labels as never, entry.value);
        } catch (error) {
          logger.warn({ err: error, metric: options.name }, "a metric could not be read");
        }
      },
    });
  }
}

/** A running `/metrics` endpoint. */
export interface MetricsServer {
  /** The bound port (useful when asked for 0). */
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `metrics` at `GET /metrics` on `host:port` (Prometheus text format; 404 for any other
 * path, 405 for another method). Port 0 picks a free one.
 */
export async function startMetricsServer(metrics: ServiceMetrics, port: number, host: string, logger: Logger): Promise<MetricsServer> {
  const server = http.createServer((request, response) => {
    const path = (request.url ?? "").split("?")[0];
    if (path !== "/metrics") return void response.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    if (request.method !== "GET" && request.method !== "HEAD") return void response.writeHead(405, { allow: "GET, HEAD" }).end();
    metrics.registry.metrics().then(
      (text) => response.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      (error: unknown) => {
        logger.error({ err: error }, "metrics could not be rendered");
        response.writeHead(500, { "content-type": "text/plain" }).end("metrics unavailable\n");
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  logger.info({ metrics_port: bound }, "metrics listening");
  return {
    port: bound,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The pool of knex under MikroORM (tarn), as far as the gauges read it. */
interface PoolStats {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
}

/**
 * Gauges of `orm`'s connection pool: `db_pool_connections{state="in_use"|"idle"}` and
 * `db_pool_waiting` (acquires waiting for a connection).
 */
export function registerDatabasePoolGauges(metrics: ServiceMetrics, orm: Orm, logger: Logger): void {
  const pool = () => (orm.em.getConnection() as unknown as { getKnex(): { client: { pool?: PoolStats } } }).getKnex().client.pool;
  metrics.gauge({
    name: "db_pool_connections",
    help: "Database connections of the pool, by state (in_use, idle)",
    labelNames: ["state"] as const,
    logger,
    collect: async () => {
      const stats = pool();
      return stats ? [{ labels: { state: "in_use" }, value: stats.numUsed() }, { labels: { state: "idle" }, value: stats.numFree() }] : [];
    },
  });
  metrics.gauge({ name: "db_pool_waiting", help: "Database connection acquires waiting for a free connection", logger, collect: async () => pool()?.numPendingAcquires() ?? 0 });
}

/**
 * A gauge read by one SQL statement at scrape time. The statement returns rows with a numeric
 * `value` column and one text column per label (one row and no labels for a plain count).
 */
export function registerSqlGauge(
  metrics: ServiceMetrics,
  orm: Orm,
  logger: Logger,
  options: { name: string; help: string; sql: string; labelNames?: readonly string[] },
): void {
  const labelNames = options.labelNames ?? [];
  metrics.gauge({
    name: options.name,
    help: options.help,
    labelNames,
    logger,
    collect: async () => {
      const rows = await orm.em.fork().execute<Record<string, unknown>[]>(options.sql);
      if (labelNames.length === 0) return Number(rows[0]?.value ?? 0);
      return rows.map((row) => ({ labels: Object.fromEntries(labelNames.map((name) => [name, String(row[name])])), value: Number(row.value) }));
    },
  });
}

/** Gauges of the transactional outbox (table `outbox`): rows not yet published, and the age of the oldest, in seconds. */
export function registerOutboxGauges(metrics: ServiceMetrics, orm: Orm, logger: Logger): void {
  registerSqlGauge(metrics, orm, logger, {
    name: "outbox_backlog",
    help: "Outbox events not yet published to JetStream",
    sql: "SELECT count(*)::bigint AS value FROM outbox WHERE published_at IS NULL",
  });
  registerSqlGauge(metrics, orm, logger, {
    name: "outbox_oldest_age_seconds",
    help: "Age of the oldest outbox event not yet published, in seconds (0 when none waits)",
    sql: "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS value FROM outbox WHERE published_at IS NULL",
  });
}

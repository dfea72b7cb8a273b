import { z } from "zod";
import { intFromEnv, loadConfig, metricsConfigFields } from "@tally/platform";

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * The usage service's configuration, read from environment variables only. Every limit is a
 * named value with a default; the NATS stream settings are the producer's (generations) too,
 * so whichever service starts first creates the same stream.
 */
/** A reservation lives as long as a credit hold by default (credits' HOLD_TTL_MS), in milliseconds. */
export const RESERVATION_TTL_MS_DEFAULT = 3_600_000;

export const usageConfigSchema = z.object({
  DATABASE_URL: z.string().min(1).default("postgres://postgres@127.0.0.1:5432/tally_usage"),
  /** Most connections the database pool opens. */
  DATABASE_POOL_MAX: intFromEnv(10).pipe(z.number().min(1)),
  /** Longest a statement may run before PostgreSQL cancels it, in milliseconds. */
  DATABASE_STATEMENT_TIMEOUT_MS: intFromEnv(15_000).pipe(z.number().min(100)),
  GRPC_HOST: z.string().min(1).default("0.0.0.0"),
  GRPC_PORT: intFromEnv(50053).pipe(z.number().min(0).max(65_535)),
  ...metricsConfigFields,
  /** How long running gRPC calls may finish during shutdown, in milliseconds. */
  GRPC_SHUTDOWN_TIMEOUT_MS: intFromEnv(5_000).pipe(z.number().min(0)),
  NATS_URL: z.string().min(1).default("nats://127.0.0.1:4222"),
  NATS_STREAM: z.string().min(1).default("TALLY_GENERATION_EVENTS"),
  NATS_SUBJECT_PREFIX: z.string().min(1).default("tally"),
  /** The stream usage's own events (UsageThresholdCrossed on `<prefix>.usage.>`) are published to. */
  NATS_USAGE_STREAM: z.string().min(1).default("TALLY_USAGE_EVENTS"),
  /** Durable pull consumer name; replicas share it and split the work. */
  NATS_CONSUMER: z.string().min(1).default("usage-generation-events"),
  /** JetStream de-duplicates publishes by `Nats-Msg-Id` within this window, in milliseconds. */
  NATS_DUPLICATE_WINDOW_MS: intFromEnv(120_000).pipe(z.number().min(1_000)),
  /** How long the stream keeps messages, in milliseconds (0 = forever). */
  NATS_STREAM_MAX_AGE_MS: intFromEnv(7 * DAY_MS).pipe(z.number().min(0)),
  /** Messages pulled per request from the durable consumer. */
  CONSUMER_BATCH_SIZE: intFromEnv(1_000).pipe(z.number().min(1).max(10_000)),
  /**
   * Lanes of the consumer: pulled messages are split by user id into this many lanes, each
   * recording its chunks one after the other, in arrival order, each chunk in its own
   * transaction; the lanes record at once, each on its own pooled connection (1 = one chunk
   * after another). A user's events are always in one lane, so they count in the order they
   * arrived (a chunk nak'ed after a transient failure comes back after the ones that followed it).
   */
  CONSUMER_CHUNKS_IN_FLIGHT: intFromEnv(2).pipe(z.number().min(1).max(16)),
  /** How long one pull request waits for messages, in milliseconds; a graceful stop waits for the current one to end. */
  CONSUMER_FETCH_EXPIRES_MS: intFromEnv(2_000).pipe(z.number().min(1_000)),
  /** Time the server waits for an ack before redelivering, in milliseconds. */
  CONSUMER_ACK_WAIT_MS: intFromEnv(30_000).pipe(z.number().min(100)),
  /** Delay before a message that failed transiently (e.g. database down) comes back, in milliseconds. */
  CONSUMER_NAK_DELAY_MS: intFromEnv(1_000).pipe(z.number().min(0)),
  /** Deliveries per message before the server gives up; -1 = unlimited (poison messages are dead-lettered, not dropped). */
  CONSUMER_MAX_DELIVER: intFromEnv(-1).pipe(z.number().refine((n) => n === -1 || n >= 1, "must be -1 (unlimited) or at least 1")),
  /** Unacknowledged messages the server lets the consumer hold at once. */
  CONSUMER_MAX_ACK_PENDING: intFromEnv(2_000).pipe(z.number().min(1)),
  /** The plans file (YAML or JSON, docs/plans.md); unset or empty = the built-in plans. Validated at start-up. */
  PLANS_FILE: z
    .string()
    .optional()
    .transform((value) => value || undefined),
  /** How long a quota reservation lives when its job never ends (no completion, failure or cancellation event), in milliseconds. */
  RESERVATION_TTL_MS: intFromEnv(RESERVATION_TTL_MS_DEFAULT).pipe(z.number().min(1_000)),
  /** Pause of the reservation-expiry runner between sweeps that found nothing more to expire, in milliseconds. */
  RESERVATION_SWEEP_INTERVAL_MS: intFromEnv(5_000).pipe(z.number().min(10)),
  /** Most expired reservations one sweep releases. */
  RESERVATION_SWEEP_BATCH_SIZE: intFromEnv(100).pipe(z.number().min(1).max(10_000)),
  /** Pause of the usage-log partition runner between checks (partitions ahead, late entries in the default partition), in milliseconds. */
  USAGE_LOG_PARTITION_CHECK_INTERVAL_MS: intFromEnv(3_600_000).pipe(z.number().min(10)),
  /** Months after the current UTC month whose usage-log partitions the runner keeps created. */
  USAGE_LOG_PARTITIONS_AHEAD_MONTHS: intFromEnv(3).pipe(z.number().min(0).max(120)),
  /** Wait of the outbox relay between polls when the outbox is empty, in milliseconds. */
  OUTBOX_POLL_INTERVAL_MS: intFromEnv(200).pipe(z.number().min(10)),
  /** Outbox rows the relay claims and publishes per batch. */
  OUTBOX_BATCH_SIZE: intFromEnv(100).pipe(z.number().min(1).max(10_000)),
  /** How long published outbox rows are kept (for replay), in milliseconds. */
  OUTBOX_RETENTION_MS: intFromEnv(7 * DAY_MS).pipe(z.number().min(0)),
  /** How long the relay waits for one PubAck, in milliseconds (a batch's claim lasts twice this). */
  OUTBOX_PUBLISH_TIMEOUT_MS: intFromEnv(5_000).pipe(z.number().min(100)),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type UsageConfig = z.infer<typeof usageConfigSchema>;

/** Reads the config from `env` (default `process.env`); throws a ConfigError listing every problem. */
export const loadUsageConfig = (env: NodeJS.ProcessEnv = process.env): UsageConfig => loadConfig(usageConfigSchema, env);

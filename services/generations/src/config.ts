import { availableParallelism } from "node:os";
import { z } from "zod";
import { loadConfig, metricsConfigFields } from "@tally/platform";
import { parsePricing } from "./domain/pricing";
import { BATCH_OPERATIONS_LIMIT } from "./adapter/credits-batcher";

/** A boolean environment variable: "true"/"1" or "false"/"0" (z.coerce.boolean would read "false" as true). */
const booleanFromEnv = (defaultValue: boolean) =>
  z
    .enum(["true", "false", "1", "0"])
    .default(defaultValue ? "true" : "false")
    .transform((value) => value === "true" || value === "1");

const positiveInt = (defaultValue: number) => z.coerce.number().int().positive().default(defaultValue);
const nonNegativeInt = (defaultValue: number) => z.coerce.number().int().nonnegative().default(defaultValue);

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Configuration of the generations service, from environment variables only. Every limit is
 * a named value with a default; a bad value stops the service at start-up.
 */
export const generationsConfigSchema = z.object({
  DATABASE_URL: z.string().url().default("postgres://postgres@127.0.0.1:5432/tally_generations"),
  DATABASE_POOL_MAX: positiveInt(10),
  DATABASE_STATEMENT_TIMEOUT_MS: positiveInt(15_000),
  GRPC_HOST: z.string().default("0.0.0.0"),
  GRPC_PORT: nonNegativeInt(50052),
  ...metricsConfigFields,
  /** How long in-flight calls may finish at shutdown before they are cut, in milliseconds. */
  GRPC_SHUTDOWN_TIMEOUT_MS: positiveInt(5_000),
  CREDITS_GRPC_ADDRESS: z.string().default("127.0.0.1:50051"),
  /** The usage service (plan limits: CheckAndReserve before every hold, ReleaseReservation when a job is not stored). */
  USAGE_GRPC_ADDRESS: z.string().min(1).default("127.0.0.1:50053"),
  /** Deadline of every call to another service, in milliseconds. */
  DOWNSTREAM_TIMEOUT_MS: positiveInt(5_000),
  /**
   * Most members of one batch call to credits (BatchCreateHolds, BatchCaptureHolds,
   * BatchReleaseHolds). CreateHold, CaptureHold and ReleaseHold calls made while one of their
   * kind is in flight go together as one batch call when it returns; a call with none in flight
   * goes at once, unary. 1: every call unary, on its own (for a credits service without the
   * batch RPCs).
   */
  CREDITS_BATCH_MAX_OPERATIONS: z.coerce.number().int().min(1).max(BATCH_OPERATIONS_LIMIT).default(64),
  /**
   * Extra wait, in milliseconds (0 or 1), after a call in flight returns before the calls queued
   * behind it go as one batch (more may join). Unset: the former name
   * CREDITS_SETTLE_COALESCE_WINDOW_MS when set (capped at 1), else 0 (no wait).
   */
  CREDITS_BATCH_WINDOW_MS: z.coerce.number().int().min(0).max(1).optional(),
  /** The former name of CREDITS_BATCH_WINDOW_MS (a fixed window for captures and releases), still read; values above 1 count as 1. */
  CREDITS_SETTLE_COALESCE_WINDOW_MS: nonNegativeInt(0),
  /**
   * Passed to CreateHold as ttl_ms; 0 means the credits service's default (1 hour). When set,
   * it must exceed PROVIDER_TIMEOUT_MS + WORKER_LEASE_MS (checked below).
   */
  HOLD_TTL_MS: nonNegativeInt(0),

  NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  NATS_STREAM: z.string().min(1).default("TALLY_GENERATION_EVENTS"),
  NATS_SUBJECT_PREFIX: z.string().min(1).default("tally"),
  /** JetStream de-duplicates re-published outbox rows by Nats-Msg-Id within this window. */
  NATS_DUPLICATE_WINDOW_MS: positiveInt(2 * 60 * 1000),
  /** How long the stream keeps events, in milliseconds (0 = forever). */
  NATS_STREAM_MAX_AGE_MS: nonNegativeInt(7 * DAY_MS),
  /** How long the relay waits for one PubAck, in milliseconds. */
  NATS_PUBLISH_TIMEOUT_MS: positiveInt(5_000),
  /** The credits service's account events stream (subjects `<prefix>.account.>`), consumed for `account.deleted`; unset: `<PREFIX>_ACCOUNT_EVENTS`. */
  NATS_ACCOUNT_STREAM: z.string().min(1).optional(),
  /** The durable consumer of account events (replicas share it). */
  NATS_ACCOUNT_CONSUMER: z.string().min(1).default("generations-account-events"),
  /** Whether this replica consumes account events (erasure); off only in tests of other things. */
  ACCOUNT_EVENTS_ENABLED: booleanFromEnv(true),

  /** The plans file (YAML or JSON, docs/plans.md): each plan's free_retries per job; unset or empty = the built-in plans. Validated at start-up. */
  PLANS_FILE: z
    .string()
    .optional()
    .transform((value) => value || undefined),

  /** Credits per input type, JSON: {"text":1,"photo":2,"address":2}. */
  PRICING_CREDITS: z
    .string()
    .default('{"text":1,"photo":2,"address":2}')
    .transform((value, ctx) => {
      try {
        return parsePricing(value);
      } catch (error) {
        ctx.addIssue({ code: "custom", message: (error as Error).message });
        return z.NEVER;
      }
    }),
  PROMPT_LENGTH_MAX: positiveInt(2_000),
  PHOTO_URL_LENGTH_MAX: positiveInt(2_048),
  ADDRESS_LENGTH_MAX: positiveInt(500),
  STYLE_LENGTH_MAX: positiveInt(100),

  WORKER_ENABLED: booleanFromEnv(true),
  WORKER_CONCURRENCY: positiveInt(2),
  WORKER_POLL_INTERVAL_MS: positiveInt(200),
  /** A claimed job belongs to its worker until this lease runs out; renewed while it runs. */
  WORKER_LEASE_MS: positiveInt(60_000),
  /** How long shutdown waits for running jobs before abandoning them to their lease. */
  WORKER_SHUTDOWN_TIMEOUT_MS: positiveInt(10_000),
  /** Attempts at a capture/release call before the job is left for a later reclaim. */
  WORKER_SETTLEMENT_ATTEMPTS: positiveInt(3),
  /** Progress is written to the database (and the lease renewed) at most every this many percent. */
  WORKER_PROGRESS_STEP_PERCENT: positiveInt(10),

  /** Longest a provider may run one job before it fails with `provider_timeout`, in milliseconds. */
  PROVIDER_TIMEOUT_MS: positiveInt(120_000),
  PROVIDER_IMAGE_SIZE_PX: positiveInt(256),
  PROVIDER_FRACTAL_ITERATIONS_MAX: positiveInt(256),
  /** Rows rendered between progress reports and abort checks. */
  PROVIDER_ROWS_PER_CHUNK: positiveInt(16),
  /** Worker threads that render and encode images (off the event loop); default: the machine's cores, at least 1. */
  GENERATION_RENDER_THREADS: positiveInt(Math.max(1, availableParallelism())),
  /** Price of one CPU second of rendering, in micro-units of the currency (integer). */
  PROVIDER_COST_MICROS_PER_CPU_SECOND: nonNegativeInt(20_000),
  /** Enables FaultInjectionProvider (`[fault:provider_error]` in an input fails the job). Tests only. */
  FAULT_INJECTION_ENABLED: booleanFromEnv(false),

  OUTBOX_POLL_INTERVAL_MS: positiveInt(200),
  OUTBOX_BATCH_SIZE: positiveInt(100),
  /** Published rows are kept this long for replay, then pruned, in milliseconds. */
  OUTBOX_RETENTION_MS: positiveInt(7 * DAY_MS),
  OUTBOX_PRUNE_INTERVAL_MS: positiveInt(60_000),
  /** Longest wait between relay attempts while NATS is unreachable, in milliseconds. */
  OUTBOX_BACKOFF_MAX_MS: positiveInt(5_000),

  /** Most WatchGeneration streams open at once in one process; beyond, a new one is refused `unavailable`. */
  WATCH_MAX_STREAMS: positiveInt(2_000),
  /** First wait before the generation_events listener reconnects, in milliseconds (doubling up to WATCH_RECONNECT_MAX_MS). */
  WATCH_RECONNECT_INITIAL_MS: positiveInt(250),
  WATCH_RECONNECT_MAX_MS: positiveInt(5_000),

  LOG_LEVEL: z.string().default("info"),
}).superRefine((config, ctx) => {
  // A running job's hold is extended at its lease renewals once its deadline is within two
  // leases (HoldKeeper). A job whose worker died is reclaimed after at most one lease and its
  // new worker's first heartbeat comes a third of a lease later: a hold of more than two leases
  // always outlives that gap, so a slow or reclaimed job never loses its hold mid-run.
  const twoLeasesMs = 2 * config.WORKER_LEASE_MS;
  if (config.HOLD_TTL_MS !== 0 && config.HOLD_TTL_MS <= twoLeasesMs) {
    ctx.addIssue({
      code: "custom",
      path: ["HOLD_TTL_MS"],
      message: `must exceed 2 × WORKER_LEASE_MS (${twoLeasesMs} ms), or be 0 for the credits service's default; a shorter hold could run out between a dead worker's last heartbeat and its successor's first`,
    });
  }
});

export type GenerationsConfig = z.infer<typeof generationsConfigSchema>;

/** The effective CREDITS_BATCH_WINDOW_MS: its own value, else the former CREDITS_SETTLE_COALESCE_WINDOW_MS capped at 1 ms, else 0. */
export const creditsBatchWindowMs = (config: GenerationsConfig): number =>
  config.CREDITS_BATCH_WINDOW_MS ?? Math.min(1, config.CREDITS_SETTLE_COALESCE_WINDOW_MS);

/** Reads the configuration from `env` (default: the process environment). */
export const loadGenerationsConfig = (env: NodeJS.ProcessEnv = process.env): GenerationsConfig =>
  loadConfig(generationsConfigSchema, env);

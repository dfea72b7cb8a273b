import { z } from "zod";
import { intFromEnv, loadConfig, metricsConfigFields, normalizeEmail, parseEmail } from "@tally/platform";

/**
 * `TALLY_ADMIN_EMAILS`: comma-separated emails, normalized as sign-up normalizes them (trimmed,
 * lower-cased); empty entries are skipped and a malformed one stops start-up.
 */
const adminEmails = z.string().default("").transform((text, ctx) => {
  const emails = new Set<string>();
  for (const entry of text.split(",").map(normalizeEmail).filter((e) => e.length > 0)) {
    try {
      emails.add(parseEmail(entry));
    } catch {
      ctx.addIssue({ code: "custom", message: `"${entry}" is not an email address` });
    }
  }
  return emails as ReadonlySet<string>;
});

/**
 * The credits service's configuration, from environment variables only. Every limit is a
 * named value with a default; see README.md for the meaning of each.
 */
export const creditsConfigSchema = z.object({
  DATABASE_URL: z.string().url().default("postgres://postgres@127.0.0.1:5432/tally_credits"),
  DATABASE_POOL_MAX: intFromEnv(10).pipe(z.number().min(1)),
  DATABASE_STATEMENT_TIMEOUT_MS: intFromEnv(15_000).pipe(z.number().min(1)),
  GRPC_HOST: z.string().min(1).default("0.0.0.0"),
  GRPC_PORT: intFromEnv(50051).pipe(z.number().min(0).max(65_535)),
  ...metricsConfigFields,
  /** How long a graceful stop lets running calls finish before cutting them off. */
  GRPC_SHUTDOWN_TIMEOUT_MS: intFromEnv(10_000).pipe(z.number().min(0)),
  /** The plans file (YAML or JSON, docs/plans.md); unset: platform's built-in plans. Read and validated at start-up. */
  PLANS_FILE: z.string().min(1).optional(),
  /** When set, replaces the trial credits of the plans file's default plan. */
  TRIAL_CREDITS: z.coerce.number().int().min(0).optional(),
  /** Accounts registered with one of these emails are admins (the first admin of a fresh install). */
  TALLY_ADMIN_EMAILS: adminEmails,
  HOLD_TTL_MS: intFromEnv(3_600_000).pipe(z.number().min(1)),
  HOLD_TTL_MS_MAX: intFromEnv(86_400_000).pipe(z.number().min(1)),
  HOLD_EXPIRY_SWEEP_INTERVAL_MS: intFromEnv(5_000).pipe(z.number().min(1)),
  HOLD_EXPIRY_BATCH_SIZE: intFromEnv(100).pipe(z.number().min(1)),
  /** Largest single grant or hold, in credits; keeps sums far from the int64 limit. */
  CREDIT_AMOUNT_MAX: intFromEnv(1_000_000_000_000).pipe(z.number().min(1)),
  /** Accounts the Reconcile RPC checks per statement (each batch one snapshot; bounds each statement's work). */
  RECONCILE_BATCH_ACCOUNTS: intFromEnv(1_000).pipe(z.number().min(1).max(100_000)),
  /**
   * Group commit of hold operations: CreateHold, CaptureHold, ReleaseHold and ExtendHold
   * arriving within this many milliseconds of a batch's first share one transaction (0: each
   * on its own).
   */
  CREDITS_GROUP_COMMIT_WINDOW_MS: intFromEnv(1).pipe(z.number().min(0).max(100)),
  /** Most hold operations in one group commit (one transaction); a full batch goes at once. */
  CREDITS_GROUP_COMMIT_MAX_OPERATIONS: intFromEnv(64).pipe(z.number().min(1).max(1_000)),
  /** argon2id cost (OWASP 2023 minimum: 19 MiB, 2 passes, 1 lane). */
  PASSWORD_HASH_MEMORY_KIB: intFromEnv(19_456).pipe(z.number().min(8)),
  PASSWORD_HASH_TIME_COST: intFromEnv(2).pipe(z.number().min(1)),
  /** Most password hashes or verifications running at once (each one takes a libuv thread). */
  PASSWORD_HASH_CONCURRENCY: intFromEnv(4).pipe(z.number().min(1)),
  /** Most hashes waiting for a slot; beyond that a sign-up or sign-in is shed with `unavailable`. */
  PASSWORD_HASH_QUEUE_MAX: intFromEnv(64).pipe(z.number().min(0)),
  NATS_URL: z.string().min(1).default("nats://127.0.0.1:4222"),
  /** Subjects are `<prefix>.account.*` (e.g. `tally.account.deleted`). */
  NATS_SUBJECT_PREFIX: z.string().min(1).default("tally"),
  /** The stream credits publishes account events to (subjects `<prefix>.account.>`); unset: `<PREFIX>_ACCOUNT_EVENTS`. */
  NATS_ACCOUNT_STREAM: z.string().min(1).optional(),
  /** JetStream de-duplicates re-published outbox rows by Nats-Msg-Id within this window, in milliseconds. */
  NATS_DUPLICATE_WINDOW_MS: intFromEnv(120_000).pipe(z.number().min(1_000)),
  /** How long the stream keeps events, in milliseconds (0 = forever). */
  NATS_STREAM_MAX_AGE_MS: intFromEnv(7 * 24 * 60 * 60 * 1000).pipe(z.number().min(0)),
  /** Wait of the outbox relay between polls when the outbox is empty, in milliseconds. */
  OUTBOX_POLL_INTERVAL_MS: intFromEnv(200).pipe(z.number().min(10)),
  /** Outbox rows the relay claims per batch. */
  OUTBOX_BATCH_SIZE: intFromEnv(100).pipe(z.number().min(1).max(10_000)),
  /** Published outbox rows are kept this long (for replay), in milliseconds. */
  OUTBOX_RETENTION_MS: intFromEnv(7 * 24 * 60 * 60 * 1000).pipe(z.number().min(0)),
  /** How long the relay waits for one PubAck, in milliseconds. */
  OUTBOX_PUBLISH_TIMEOUT_MS: intFromEnv(5_000).pipe(z.number().min(100)),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type CreditsConfig = z.infer<typeof creditsConfigSchema>;

/** Reads the configuration from `env` (default `process.env`); a bad value stops start-up. */
export const loadCreditsConfig = (env: NodeJS.ProcessEnv = process.env): CreditsConfig => loadConfig(creditsConfigSchema, env);

import { z } from "zod";
import { intFromEnv, loadConfig } from "@tally/platform";

/** `PLAN_TRIAL_CREDITS`: a JSON object of plan name → trial credits, e.g. `{"free":10,"pro":0}`. */
const planTrialCredits = z
  .string()
  .transform((text, ctx) => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      ctx.addIssue({ code: "custom", message: "must be a JSON object such as {\"free\":10}" });
      return z.NEVER;
    }
  })
  .pipe(z.record(z.string().min(1), z.number().int().nonnegative()));

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
  /** How long a graceful stop lets running calls finish before cutting them off. */
  GRPC_SHUTDOWN_TIMEOUT_MS: intFromEnv(10_000).pipe(z.number().min(0)),
  DEFAULT_PLAN: z.string().min(1).default("free"),
  /** Trial credits of the default plan (a `PLAN_TRIAL_CREDITS` entry for it wins). */
  TRIAL_CREDITS: intFromEnv(10).pipe(z.number().min(0)),
  PLAN_TRIAL_CREDITS: planTrialCredits.default({}),
  HOLD_TTL_MS: intFromEnv(3_600_000).pipe(z.number().min(1)),
  HOLD_TTL_MS_MAX: intFromEnv(86_400_000).pipe(z.number().min(1)),
  HOLD_EXPIRY_SWEEP_INTERVAL_MS: intFromEnv(5_000).pipe(z.number().min(1)),
  HOLD_EXPIRY_BATCH_SIZE: intFromEnv(100).pipe(z.number().min(1)),
  /** Largest single grant or hold, in credits; keeps sums far from the int64 limit. */
  CREDIT_AMOUNT_MAX: intFromEnv(1_000_000_000_000).pipe(z.number().min(1)),
  /** argon2id cost (OWASP 2023 minimum: 19 MiB, 2 passes, 1 lane). */
  PASSWORD_HASH_MEMORY_KIB: intFromEnv(19_456).pipe(z.number().min(8)),
  PASSWORD_HASH_TIME_COST: intFromEnv(2).pipe(z.number().min(1)),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type CreditsConfig = z.infer<typeof creditsConfigSchema>;

/** Reads the configuration from `env` (default `process.env`); a bad value stops start-up. */
export const loadCreditsConfig = (env: NodeJS.ProcessEnv = process.env): CreditsConfig => loadConfig(creditsConfigSchema, env);

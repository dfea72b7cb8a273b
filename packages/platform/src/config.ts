import { z } from "zod";

/** Thrown at start-up when the environment does not satisfy a service's config schema. */
export class ConfigError extends Error {}

/**
 * Parses environment variables with a zod schema. Every limit is a named config value with
 * a default in the schema; a wrong value stops the service at start-up with every problem
 * listed, rather than failing later.
 */
export function loadConfig<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const result = schema.safeParse(env);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
  return result.data;
}

/** An integer environment variable with a default (e.g. `GRPC_PORT`). */
export const intFromEnv = (defaultValue: number) => z.coerce.number().int().default(defaultValue);

/**
 * The `/metrics` endpoint every service may serve (Prometheus text format): METRICS_PORT
 * (unset: no endpoint; 0: a free port) and METRICS_HOST. Spread into a service's schema.
 */
export const metricsConfigFields = {
  METRICS_PORT: z.coerce.number().int().min(0).max(65_535).optional(),
  METRICS_HOST: z.string().min(1).default("0.0.0.0"),
};

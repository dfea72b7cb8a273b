import { randomBytes } from "node:crypto";
import { dropDatabase, ensureDatabase, withDatabase } from "./db";

/** PostgreSQL server the tests use: `DATABASE_URL`, else the local default. */
export const testServerUrl = (): string => process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** NATS the tests use: `NATS_URL`, else the local default. */
export const testNatsUrl = (): string => process.env.NATS_URL ?? "nats://127.0.0.1:4222";

/** A short random suffix so that test runs never share databases, streams or subjects. */
export const uniqueSuffix = (): string => `${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;

/**
 * Creates a fresh database named `tally_test_<prefix>_<suffix>` for one test file and returns
 * its URL and a function that drops it.
 */
export async function createTestDatabase(prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const url = withDatabase(testServerUrl(), `tally_test_${prefix}_${uniqueSuffix()}`);
  await ensureDatabase(url);
  return { url, drop: () => dropDatabase(url) };
}

/** Polls `probe` every `intervalMs` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms${lastError ? `: ${String(lastError)}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

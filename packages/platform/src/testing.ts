import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { dropDatabase, ensureDatabase, withDatabase } from "./db";
import { REPOSITORY_ROOT } from "./process";

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

/**
 * Runs the repository script `script` (e.g. `scripts/admin.ts`) as an operator would, in a
 * child process (`node --import tsx`) with `args` and `env` over this process's environment;
 * resolves with its exit code and everything it printed.
 */
export function runRepositoryScript(script: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(REPOSITORY_ROOT, script), ...args], {
      cwd: REPOSITORY_ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => void (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => void (stderr += chunk.toString()));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}


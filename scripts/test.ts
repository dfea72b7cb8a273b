/**
 * `npm test` (after lint): finds or starts PostgreSQL and NATS (see infra.ts), runs the whole
 * Jest suite against them, stops what it started, and prints one closing line
 * `tests: N passed, N failed` with the suite's exit code. Extra arguments go to Jest.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPOSITORY_ROOT } from "@tally/platform";
import { ensureInfrastructure } from "./infra";

async function main(): Promise<void> {
  const started = Date.now();
  const log = (message: string) => process.stdout.write(`[test] ${message}\n`);
  const infra = await ensureInfrastructure({ stateDir: path.join(REPOSITORY_ROOT, ".tally"), persistent: false, log });
  const resultsDir = mkdtempSync(path.join(os.tmpdir(), "tally-jest-"));
  const resultsFile = path.join(resultsDir, "results.json");
  let code: number;
  try {
    code = await new Promise<number>((resolve) => {
      const jest = spawn(
        path.join(REPOSITORY_ROOT, "node_modules/.bin/jest"),
        ["--runInBand", "--json", `--outputFile=${resultsFile}`, ...process.argv.slice(2)],
        { stdio: "inherit", env: { ...process.env, DATABASE_URL: infra.databaseUrl, NATS_URL: infra.natsUrl }, cwd: REPOSITORY_ROOT },
      );
      jest.once("exit", (exitCode) => resolve(exitCode ?? 1));
    });
  } finally {
    await infra.stop();
  }
  try {
    const results = JSON.parse(readFileSync(resultsFile, "utf8")) as { numPassedTests: number; numFailedTests: number; numPendingTests: number };
    log(`took ${Math.round((Date.now() - started) / 1000)} s`);
    process.stdout.write(`tests: ${results.numPassedTests} passed, ${results.numFailedTests} failed, ${results.numPendingTests} skipped\n`);
  } catch {
    log("no test results were written");
    code = code || 1;
  }
  rmSync(resultsDir, { recursive: true, force: true });
  process.exit(code);
}

void main();

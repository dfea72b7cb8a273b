/**
 * `npm run bench`: finds or starts PostgreSQL and NATS (scripts/infra.ts), then runs every
 * benchmark in this folder in turn; each prints its own figures.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";
import { ensureInfrastructure } from "../scripts/infra";

async function main(): Promise<void> {
  const infra = await ensureInfrastructure({
    stateDir: path.join(__dirname, "../.tally"),
    persistent: false,
    log: (message) => console.log(`[bench] ${message}`),
  });
  const only = process.argv[2];
  // Long benchmarks run only when named (`npm run bench credits-growth`), not in the all-benchmarks run.
  const namedOnly = ["credits-growth.ts"];
  const benches = readdirSync(__dirname).filter((file) => file.endsWith(".ts") && file !== "run.ts" && (only ? file.startsWith(only) : !namedOnly.includes(file)));
  let failed = false;
  try {
    for (const bench of benches) {
      // Arguments after the benchmark's name go to it (`npm run bench usage-scale -- --entries 1000000`).
      const result = spawnSync(process.execPath, ["--import", "tsx", path.join(__dirname, bench), ...(only ? process.argv.slice(3) : [])], {
        stdio: "inherit",
        env: { ...process.env, DATABASE_URL: infra.databaseUrl, NATS_URL: infra.natsUrl },
      });
      failed ||= result.status !== 0;
    }
  } finally {
    await infra.stop();
  }
  process.exit(failed ? 1 : 0);
}

void main();

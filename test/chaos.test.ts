/**
 * The fault run in `npm test`: `npm run chaos` for 60 seconds on its own PostgreSQL and
 * nats-server, SIGKILLing and restarting one component at a time under load, must end with
 * every check at 0 (every accepted job ended, every outcome in the usage log exactly once,
 * credits conserved, every derived table and both services' reconciliations equal to their
 * facts). Its report is printed.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { REPOSITORY_ROOT } from "@tally/platform";

const DURATION_S = 60;

it(`survives ${DURATION_S} s of kills under load with every check at 0`, async () => {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(REPOSITORY_ROOT, "scripts/chaos.ts"), "--duration-s", String(DURATION_S)], {
    cwd: REPOSITORY_ROOT,
    env: { ...process.env, LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  const report = output.split("\n").filter((line) => line.startsWith("[chaos]") && !line.includes("kill -9"));
  // eslint-disable-next-line no-console
  console.log(report.join("\n"));
  const checks = report.filter((line) => line.includes(" check "));
  expect(checks.length).toBeGreaterThanOrEqual(10);
  expect({ code, failed: checks.filter((line) => !line.includes(" check PASS ")) }).toEqual({ code: 0, failed: [] });
  expect(output).toContain("chaos: PASSED");
}, 480_000);

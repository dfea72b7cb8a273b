/**
 * `npm run usage-admin -- <command>`: operator commands on the usage service's database
 * (the usage log and what is derived from it), safe while the service runs.
 *
 *   npm run usage-admin -- reconcile           compares every derived table with the usage log
 *   npm run usage-admin -- rebuild             recomputes EVERY derived table from the logs
 *   npm run usage-admin -- rebuild-analytics   recomputes the monthly analytics from the log
 *
 * `reconcile` prints the differences of the user stats, the limit counters and the monthly
 * analytics as JSON and exits 0 when there are none, 3 when there are some (INV-6).
 * `rebuild-analytics` replaces `monthly_analytics` with what the usage log says, in one
 * transaction (entries recorded meanwhile wait and then add themselves), prints the rows
 * written and exits 0. `rebuild` rewrites every derived table (user stats with download totals,
 * the period and day counters — used from the log, reserved from the active reservations —,
 * the subjects' active reservation counts, the monthly analytics) in one transaction that locks
 * them first (events recorded meanwhile wait, then apply on top), prints the rows written per
 * table and exits 0. Environment: `DATABASE_URL` (the usage database; default
 * `postgres://postgres@127.0.0.1:5432/tally_usage`). Errors go to stderr with exit 1.
 */
import { createLogger, openDatabase } from "@tally/platform";
import { usageMigrations } from "../services/usage/src/adapter/migrations";
import { buildUsageServices } from "../services/usage/src/app";

const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tally_usage";
const USAGE = "usage: npm run usage-admin -- reconcile | rebuild | rebuild-analytics";
const COMMANDS = new Set(["reconcile", "rebuild", "rebuild-analytics"]);
/**
 * The statement timeout of these commands, in milliseconds: each reads (and `rebuild` rewrites)
 * whole tables, far longer than a service call may take (the services' 15 s default).
 */
const ADMIN_STATEMENT_TIMEOUT_MS = 3_600_000;
/** Exit code of a reconciliation that found differences. */
const EXIT_DIFFERENCES = 3;

const json = (value: unknown) => JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || !COMMANDS.has(command) || rest.length > 0) {
    process.stderr.write(`${USAGE}\n`);
    return 1;
  }
  const logger = createLogger("usage-admin", "warn");
  // The service migrates its own database; this tool never does.
  const orm = await openDatabase({
    url: process.env.DATABASE_URL || DEFAULT_DATABASE_URL,
    entities: [],
    migrations: usageMigrations,
    logger,
    migrate: false,
    limits: { poolMax: 4, statementTimeoutMs: ADMIN_STATEMENT_TIMEOUT_MS },
  });
  try {
    const { stats } = buildUsageServices(orm);
    if (command === "rebuild-analytics") {
      process.stdout.write(`${json({ monthly_analytics_rows: await stats.rebuildAnalytics() })}\n`);
      return 0;
    }
    if (command === "rebuild") {
      const rows = await stats.rebuild();
      const written = { user_stats: rows.userStats, period_usage: rows.periodUsage, daily_usage: rows.dailyUsage, subjects: rows.subjects, monthly_analytics: rows.monthlyAnalytics };
      process.stdout.write(`${json({ rows_written: written })}\n`);
      return 0;
    }
    const [userStats, counters, analytics] = [await stats.reconcile(), await stats.reconcileCounters(), await stats.reconcileAnalytics()];
    const differences = userStats.length + counters.length + analytics.length;
    process.stdout.write(`${json({ differences, user_stats: userStats, limit_counters: counters, monthly_analytics: analytics })}\n`);
    return differences === 0 ? 0 : EXIT_DIFFERENCES;
  } finally {
    await orm.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`usage-admin failed: ${(error as Error).message}\n`);
    process.exit(1);
  },
);

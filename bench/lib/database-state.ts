/**
 * The state of the benchmark's database before a measured step: nothing dirty left to write
 * (`settle`) and the OS page cache holding it (`warmPageCache`).
 */
import type pg from "pg";

/**
 * A CHECKPOINT before a measured step, so that writing out what an earlier step or run left
 * dirty (an ingest's pages, a seed) is not measured as part of it. Skipped when the role may
 * not checkpoint (pg_checkpoint or superuser).
 */
export async function settle(db: pg.Client): Promise<void> {
  await db.query("CHECKPOINT").catch(() => undefined);
}

/**
 * Reads every table and index of the database once (`pg_prewarm(…, 'read')`: through the
 * operating system, not into shared_buffers), so that the OS page cache holds the database as a
 * server that has been running would (this machine's RAM is several times the 10M seed). Right
 * after a reboot or another large job, the reads would otherwise wait on the disk and measure
 * it: summary p99 21 ms with the page cache cold, 14 ms warm, same code. Skipped, and said so,
 * where pg_prewarm cannot be created (not a superuser, or the contrib modules missing).
 */
export async function warmPageCache(db: pg.Client, log: (line: string) => void): Promise<void> {
  try {
    await db.query("CREATE EXTENSION IF NOT EXISTS pg_prewarm");
  } catch (error) {
    log(`  page cache not warmed: ${(error as Error).message}`);
    return;
  }
  const started = Date.now();
  const { rows } = await db.query<{ blocks: string }>(
    `SELECT coalesce(sum(pg_prewarm(c.oid, 'read')), 0) AS blocks FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'i', 't', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')`,
  );
  log(`  page cache warmed: ${(Number(rows[0]!.blocks) * 8 / 1024).toFixed(0)} MB read in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

import { toBigInt, type Sql } from "@tally/platform";
import type { CreatedUsageLogPartition, UsageLogPartitionStore } from "../domain/ports";

/**
 * The usage log's monthly partitions, through the SQL functions of Migration20261128000001
 * (`usage_log_maintain_partitions`): creating partitions ahead of time and moving entries out of
 * the default partition happen in the caller's transaction, under an advisory lock.
 */
export class SqlUsageLogPartitionStore implements UsageLogPartitionStore {
  constructor(private readonly sql: Sql) {}

  async maintain(now: Date, aheadMonths: number): Promise<CreatedUsageLogPartition[]> {
    const rows = await this.sql.query<{ partition_name: string; rows_moved: string }>(
      "SELECT partition_name, rows_moved FROM usage_log_maintain_partitions(?::timestamptz, ?::int)",
      [now, aheadMonths],
    );
    return rows.map((row) => ({ partition: row.partition_name, rowsMoved: toBigInt(row.rows_moved) }));
  }

  async list(): Promise<{ partition: string; entries: bigint }[]> {
    const rows = await this.sql.query<{ partition: string; entries: string }>(
      `SELECT c.relname AS partition, (SELECT count(*) FROM usage_log l WHERE l.tableoid = c.oid) AS entries
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'usage_log'::regclass ORDER BY c.relname`,
    );
    return rows.map((row) => ({ partition: row.partition, entries: toBigInt(row.entries) }));
  }
}

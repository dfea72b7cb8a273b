import { optionalDate, toBigInt, type Sql } from "@tally/platform";
import type { UserStatsRowDelta, UserStatsStore } from "../domain/ports";
import type { StatsBesideUsageLog, UserStats } from "../domain/types";

/** Lifetime stats on `user_stats`, one row per user, moved only by `addMany` in the transaction that appends the entries (INV-6). */
export class SqlUserStatsStore implements UserStatsStore {
  constructor(private readonly sql: Sql) {}

  async addMany(rows: readonly UserStatsRowDelta[]): Promise<void> {
    if (rows.length === 0) return;
    const sorted = [...rows].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
    // One upsert for the batch, rows in user id order (INV-9); the caller sums per user (one row each).
    await this.sql.bound(ADD_MANY, [
      sorted.map((r) => r.userId),
      sorted.map((r) => r.delta.generations),
      sorted.map((r) => r.delta.failed),
      sorted.map((r) => r.delta.costMicros),
      sorted.map((r) => r.delta.creditsSpent),
      sorted.map((r) => r.lastActivityAt),
    ]);
  }

  async addDownloads(rows: readonly { userId: string; downloads: number }[]): Promise<void> {
    if (rows.length === 0) return;
    const sorted = [...rows].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
    await this.sql.bound(ADD_DOWNLOADS, [sorted.map((r) => r.userId), sorted.map((r) => r.downloads)]);
  }

  async find(userId: string): Promise<UserStats | null> {
    const row = await this.sql.one<UserStatsRow>(`SELECT ${USER_STATS_COLUMNS} FROM user_stats WHERE user_id = ?`, [userId]);
    return row ? userStatsFromRow(row) : null;
  }

  /**
   * One statement, hence one snapshot even under READ COMMITTED: the stored rows beside totals
   * recomputed from the usage log alone (completions count as generations with their cost and
   * credits, failures as failures, last activity is the latest entry) and the download log
   * (each row one download). Written independently
   * of the domain's `statsDelta` so that reconciliation checks one against the other.
   */
  async besideUsageLog(userId?: string): Promise<StatsBesideUsageLog[]> {
    const onlyUser = userId === undefined ? "" : "WHERE user_id = ?";
    const rows = await this.sql.query<BesideRow>(
      `WITH stored AS (
         SELECT ${USER_STATS_COLUMNS} FROM user_stats ${onlyUser}
       ), entries AS (
         SELECT user_id,
                count(*) FILTER (WHERE outcome = 'completed') AS total_generations,
                count(*) FILTER (WHERE outcome = 'failed') AS total_failed,
                coalesce(sum(cost_micros) FILTER (WHERE outcome = 'completed'), 0) AS total_cost_micros,
                coalesce(sum(credits) FILTER (WHERE outcome = 'completed'), 0) AS total_credits_spent,
                max(occurred_at) AS last_activity_at
           FROM usage_log ${onlyUser}
          GROUP BY user_id
       ), downloads AS (
         SELECT user_id, count(*) AS total_downloaded FROM download_log ${onlyUser} GROUP BY user_id
       ), from_log AS (
         SELECT coalesce(e.user_id, d.user_id) AS user_id,
                coalesce(e.total_generations, 0) AS total_generations, coalesce(e.total_failed, 0) AS total_failed,
                coalesce(e.total_cost_micros, 0) AS total_cost_micros, coalesce(e.total_credits_spent, 0) AS total_credits_spent,
                e.last_activity_at, coalesce(d.total_downloaded, 0) AS total_downloaded
           FROM entries e FULL OUTER JOIN downloads d ON d.user_id = e.user_id
       )
       SELECT coalesce(s.user_id, l.user_id) AS user_id,
              s.user_id IS NOT NULL AS stored_found, s.total_generations AS stored_total_generations,
              s.total_failed AS stored_total_failed, s.total_cost_micros AS stored_total_cost_micros,
              s.total_credits_spent AS stored_total_credits_spent, s.last_activity_at AS stored_last_activity_at,
              s.total_downloaded AS stored_total_downloaded,
              l.user_id IS NOT NULL AS log_found, l.total_generations AS log_total_generations,
              l.total_failed AS log_total_failed, l.total_cost_micros AS log_total_cost_micros,
              l.total_credits_spent AS log_total_credits_spent, l.last_activity_at AS log_last_activity_at,
              l.total_downloaded AS log_total_downloaded
         FROM stored s FULL OUTER JOIN from_log l ON l.user_id = s.user_id`,
      userId === undefined ? [] : [userId, userId, userId],
    );
    return rows.map((row) => ({
      userId: row.user_id,
      stored: row.stored_found ? userStatsFromColumns(row.user_id, row, "stored_") : null,
      fromUsageLog: row.log_found ? userStatsFromColumns(row.user_id, row, "log_") : null,
    }));
  }
}

const ADD_MANY = {
  name: "usage_user_stats_add_many",
  text: `INSERT INTO user_stats AS s (user_id, total_generations, total_failed, total_cost_micros, total_credits_spent, last_activity_at)
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[]) ORDER BY 1
         ON CONFLICT (user_id) DO UPDATE SET
           total_generations = s.total_generations + excluded.total_generations,
           total_failed = s.total_failed + excluded.total_failed,
           total_cost_micros = s.total_cost_micros + excluded.total_cost_micros,
           total_credits_spent = s.total_credits_spent + excluded.total_credits_spent,
           last_activity_at = greatest(s.last_activity_at, excluded.last_activity_at),
           updated_at = now()`,
};

/** One row per user (the caller counts). */
const ADD_DOWNLOADS = {
  name: "usage_user_stats_add_downloads",
  text: `INSERT INTO user_stats AS s (user_id, total_downloaded)
         SELECT * FROM unnest($1::uuid[], $2::bigint[]) ORDER BY 1
         ON CONFLICT (user_id) DO UPDATE SET total_downloaded = s.total_downloaded + excluded.total_downloaded, updated_at = now()`,
};

export const USER_STATS_COLUMNS = "user_id, total_generations, total_failed, total_cost_micros, total_credits_spent, last_activity_at, total_downloaded";

export interface UserStatsRow {
  user_id: string;
  total_generations: string;
  total_failed: string;
  total_cost_micros: string;
  total_credits_spent: string;
  last_activity_at: Date | string | null;
  total_downloaded: string;
}

type StatsColumn = Exclude<keyof UserStatsRow, "user_id">;
/** A row of `besideUsageLog`: each side's columns prefixed `stored_` or `log_`, all null when that side has none. */
interface BesideRow {
  user_id: string;
  stored_found: boolean;
  log_found: boolean;
  [column: string]: string | Date | boolean | null;
}

export function userStatsFromRow(row: UserStatsRow): UserStats {
  return {
    userId: row.user_id,
    totalGenerations: toBigInt(row.total_generations),
    totalFailed: toBigInt(row.total_failed),
    totalCostMicros: toBigInt(row.total_cost_micros),
    totalCreditsSpent: toBigInt(row.total_credits_spent),
    lastActivityAt: optionalDate(row.last_activity_at) ?? null,
    totalDownloaded: toBigInt(row.total_downloaded),
  };
}

/** The stats in `row`'s columns named `<prefix><column>` (one side of `besideUsageLog`). */
function userStatsFromColumns(userId: string, row: BesideRow, prefix: "stored_" | "log_"): UserStats {
  const column = (name: StatsColumn) => row[`${prefix}${name}`];
  return userStatsFromRow({
    user_id: userId,
    total_generations: column("total_generations") as string,
    total_failed: column("total_failed") as string,
    total_cost_micros: column("total_cost_micros") as string,
    total_credits_spent: column("total_credits_spent") as string,
    last_activity_at: column("last_activity_at") as Date | string | null,
    total_downloaded: column("total_downloaded") as string,
  });
}

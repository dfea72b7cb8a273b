import { createUnitOfWork, SqlOutboxStore, type Orm } from "@tally/platform";
import type { UsageUnitOfWork } from "../domain/ports";
import { SqlAdoptionStore } from "./adoption-store";
import { SqlDeadLetterStore } from "./dead-letter-store";
import { SqlDerivedTablesStore } from "./derived-tables-store";
import { SqlInboxStore } from "./inbox-store";
import { SqlMonthlyAnalyticsStore } from "./monthly-analytics-store";
import { SqlPlatformRollupStore } from "./platform-rollup-store";
import { SqlReservationStore } from "./reservation-store";
import { SqlSubjectStore } from "./subject-store";
import { SqlThresholdStore, thresholdCrossedSubject } from "./threshold-store";
import { SqlUsageCounterStore } from "./usage-counter-store";
import { SqlUsageLogPartitionStore } from "./usage-log-partition-store";
import { SqlUsageLogStore } from "./usage-log-store";
import { SqlUsageSummaryStore } from "./usage-summary-store";
import { SqlUserStatsStore } from "./user-stats-store";

/**
 * The usage service's unit of work over `orm`: every store bound to one transaction (or one
 * connection scope). No idempotency-key store: the inbox makes recording an event
 * exactly-once (INV-5), and the limit RPCs are idempotent by their own keys (a reservation per
 * generation id, an adoption per guest id). Threshold events go on `<subjectPrefix>.usage.threshold_crossed`
 * (default prefix "tally").
 */
export function createUsageUnitOfWork(orm: Orm, options: { subjectPrefix?: string } = {}): UsageUnitOfWork {
  const thresholdSubject = thresholdCrossedSubject(options.subjectPrefix ?? "tally");
  return createUnitOfWork(orm, (sql) => ({
    inbox: new SqlInboxStore(sql),
    usageLog: new SqlUsageLogStore(sql),
    userStats: new SqlUserStatsStore(sql),
    monthlyAnalytics: new SqlMonthlyAnalyticsStore(sql),
    rollups: new SqlPlatformRollupStore(sql),
    deadLetters: new SqlDeadLetterStore(sql),
    subjects: new SqlSubjectStore(sql),
    counters: new SqlUsageCounterStore(sql),
    reservations: new SqlReservationStore(sql),
    adoptions: new SqlAdoptionStore(sql),
    thresholds: new SqlThresholdStore(sql, thresholdSubject),
    partitions: new SqlUsageLogPartitionStore(sql),
    derivedTables: new SqlDerivedTablesStore(sql),
    summaries: new SqlUsageSummaryStore(sql),
    outbox: new SqlOutboxStore(sql),
  }));
}

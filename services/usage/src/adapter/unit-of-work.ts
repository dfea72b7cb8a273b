import { createUnitOfWork, type Orm } from "@tally/platform";
import type { UsageUnitOfWork } from "../domain/ports";
import { SqlDeadLetterStore } from "./dead-letter-store";
import { SqlInboxStore } from "./inbox-store";
import { SqlUsageLogStore } from "./usage-log-store";
import { SqlUserStatsStore } from "./user-stats-store";

/**
 * The usage service's unit of work over `orm`: every store bound to one transaction (or one
 * connection scope). The service has no mutating RPC, so no idempotency-key store: the inbox
 * is what makes recording an event exactly-once (INV-5).
 */
export function createUsageUnitOfWork(orm: Orm): UsageUnitOfWork {
  return createUnitOfWork(orm, (sql) => ({
    inbox: new SqlInboxStore(sql),
    usageLog: new SqlUsageLogStore(sql),
    userStats: new SqlUserStatsStore(sql),
    deadLetters: new SqlDeadLetterStore(sql),
  }));
}

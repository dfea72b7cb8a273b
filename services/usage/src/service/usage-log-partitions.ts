import type { CreatedUsageLogPartition, UsageUnitOfWork } from "../domain/ports";
import type { Clock } from "../domain/types";

/**
 * The usage log's monthly partitions (PostgreSQL RANGE partitions on `occurred_at`, UTC months):
 * created ahead of time so entries never pile up in the default partition, and late or
 * far-future entries that did are moved into their month's partition once it exists.
 */
export class UsageLogPartitionService {
  constructor(
    private readonly uow: UsageUnitOfWork,
    private readonly clock: Clock = () => new Date(),
  ) {}

  /**
   * In one transaction: creates the partitions of the current UTC month (by the service's
   * clock) and of the `aheadMonths` months after it (>= 0), and of every month that has entries
   * in the default partition, moving those entries into it (INV-8 holds: entries are re-inserted
   * whole, none updated or deleted). Returns the partitions created, with the entries moved into
   * each; [] when all existed. Safe from several replicas at once (an advisory lock serialises
   * them). Errors: database errors propagate (the runner retries on its next pass).
   */
  maintain(aheadMonths: number): Promise<CreatedUsageLogPartition[]> {
    return this.uow.inTransaction((stores) => stores.partitions.maintain(this.clock(), Math.max(0, Math.trunc(aheadMonths))));
  }

  /** Every partition of the usage log and how many entries it holds (`usage_log_default` included), by name. */
  list(): Promise<{ partition: string; entries: bigint }[]> {
    return this.uow.withoutTransaction((stores) => stores.partitions.list());
  }
}

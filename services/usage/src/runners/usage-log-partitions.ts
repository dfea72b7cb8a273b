import { PollingLoop, type Logger } from "@tally/platform";
import type { UsageLogPartitionService } from "../service/usage-log-partitions";

/** What the partition runner needs from the config. */
export interface UsageLogPartitionRunnerConfig {
  /** Pause between checks, in milliseconds. */
  intervalMs: number;
  /** Months after the current one (UTC) that must already have their partition. */
  aheadMonths: number;
}

/** Longest pause while checks keep failing, in milliseconds (never below the interval). */
const CHECK_BACKOFF_MAX_MS = 60_000;

/**
 * Keeps the usage log's monthly partitions ahead of time: a platform `PollingLoop` whose first
 * pass runs at start and then every `intervalMs`; each pass creates the partitions of the
 * current month and the `aheadMonths` after it, and of any month with entries waiting in the
 * default partition, moving them (UsageLogPartitionService.maintain).
 */
export class UsageLogPartitionRunner {
  private readonly loop: PollingLoop;

  constructor(partitions: UsageLogPartitionService, config: UsageLogPartitionRunnerConfig, logger: Logger) {
    const log = logger.child({ component: "usage-log-partitions" });
    const options = { name: "usage log partitions", intervalMs: config.intervalMs, backoffMaxMs: Math.max(config.intervalMs, CHECK_BACKOFF_MAX_MS), passesInARowMax: 1 };
    this.loop = new PollingLoop(
      options,
      async () => {
        for (const created of await partitions.maintain(config.aheadMonths)) {
          log.info({ partition: created.partition, rows_moved: String(created.rowsMoved) }, "usage log partition created");
        }
        return false;
      },
      log,
    );
  }

  start(): void {
    this.loop.start();
  }

  /** Runs a check now instead of after the pause (tests, after moving the clock). */
  wakeUp(): void {
    this.loop.wakeUp();
  }

  /** Stops after the check in progress. */
  stop(): Promise<void> {
    return this.loop.stop();
  }
}

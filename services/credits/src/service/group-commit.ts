import { sqlStateOf } from "@tally/platform";
import type { HoldOperation, HoldOutcome } from "../domain/ports";

/** Deadlock (40P01) and serialization failure (40001): nothing was applied, so the same statement may simply run again. */
const RETRYABLE_SQL_STATES = new Set(["40P01", "40001"]);
/** Runs of one member alone after such a failure, at most. */
const MEMBER_ATTEMPTS_MAX = 3;

/** A member waiting for its batch. */
interface Waiting {
  operation: HoldOperation;
  resolve(outcome: HoldOutcome): void;
  reject(error: unknown): void;
}

/** CREDITS_GROUP_COMMIT_WINDOW_MS (0: off) and CREDITS_GROUP_COMMIT_MAX_OPERATIONS. */
export interface GroupCommitOptions {
  /** How long the first operation of a batch waits for others, in milliseconds; 0 applies each on its own. */
  windowMs: number;
  /** Most operations in one batch (one transaction); a full batch goes at once. */
  maxOperations: number;
}

/**
 * Group commit of hold operations: operations submitted while a batch is in flight wait for it
 * to end, at most `windowMs`, and then go together (at most `maxOperations`; an operation
 * arriving with no batch in flight goes at once). Each batch is applied by `apply`, ONE statement and ONE
 * transaction for all of them, each member with its own outcome (one short of credits fails
 * alone). Durability is unchanged: each caller is answered only after the batch's commit. When
 * the batch itself fails (a deadlock, a serialization failure, a lost connection, an
 * unexpected error of one member), nothing of it was committed and each member is retried on
 * its own, so one bad member cannot fail the others.
 */
export class HoldGroupCommit {
  private waiting: Waiting[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly running = new Set<Promise<void>>();

  constructor(
    /** Applies members in one transaction; one outcome per member in the order given. */
    private readonly apply: (operations: readonly HoldOperation[]) => Promise<HoldOutcome[]>,
    private readonly options: GroupCommitOptions,
  ) {}

  /** Applies `operation` in the next batch (at once when group commit is off) and answers its outcome after the commit. */
  submit(operation: HoldOperation): Promise<HoldOutcome> {
    if (this.options.windowMs <= 0 || this.options.maxOperations <= 1) return this.applyOne(operation);
    return new Promise<HoldOutcome>((resolve, reject) => {
      this.waiting.push({ operation, resolve, reject });
      // With no batch in flight there is nothing to wait for: go at once (a lone caller pays
      // no window). Otherwise wait for the batch in flight to end, at most the window.
      if (this.waiting.length >= this.options.maxOperations || this.running.size === 0) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.options.windowMs);
    });
  }

  /**
   * Applies `operations` (a batch call's members) together, in batches of at most
   * `maxOperations` sent at once (whatever the window), each member with its own outcome, in
   * the order given.
   */
  async submitAll(operations: readonly HoldOperation[]): Promise<HoldOutcome[]> {
    const chunks: Promise<HoldOutcome>[][] = [];
    for (let start = 0; start < operations.length; start += Math.max(1, this.options.maxOperations)) {
      const chunk = operations.slice(start, start + Math.max(1, this.options.maxOperations));
      const members = chunk.map((operation) => {
        let member!: Waiting;
        const promise = new Promise<HoldOutcome>((resolve, reject) => (member = { operation, resolve, reject }));
        return { member, promise };
      });
      const run = this.run(members.map((m) => m.member)).finally(() => this.running.delete(run));
      this.running.add(run);
      chunks.push(members.map((m) => m.promise));
    }
    return Promise.all(chunks.flat());
  }

  /** Sends what is waiting now and waits until every batch sent has been answered (graceful stop). */
  async drain(): Promise<void> {
    this.flush();
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.options.maxOperations);
      const run = this.run(batch).finally(() => {
        this.running.delete(run);
        // What arrived while this batch was in flight goes now, as one batch.
        if (this.waiting.length > 0) this.flush();
      });
      this.running.add(run);
    }
  }

  private async run(batch: Waiting[]): Promise<void> {
    if (batch.length === 1) {
      const [only] = batch as [Waiting];
      await this.applyOne(only.operation).then(only.resolve, only.reject);
      return;
    }
    let outcomes: HoldOutcome[];
    try {
      outcomes = await this.apply(batch.map((member) => member.operation));
    } catch {
      // Nothing of the batch committed: each member again on its own, so each gets its own answer.
      await Promise.all(batch.map((member) => this.applyOne(member.operation).then(member.resolve, member.reject)));
      return;
    }
    batch.forEach((member, index) => member.resolve(outcomes[index]!));
  }

  /** One member alone (one statement, one transaction), run again after a deadlock or serialization failure. */
  private async applyOne(operation: HoldOperation): Promise<HoldOutcome> {
    for (let attempt = 1; ; attempt++) {
      try {
        const [outcome] = await this.apply([operation]);
        return outcome!;
      } catch (error) {
        if (attempt >= MEMBER_ATTEMPTS_MAX || !RETRYABLE_SQL_STATES.has(sqlStateOf(error) ?? "")) throw error;
      }
    }
  }
}

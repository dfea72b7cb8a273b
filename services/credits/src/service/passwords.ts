import { hash, verify, type Options } from "@node-rs/argon2";
import pLimit, { type LimitFunction } from "p-limit";
import { deadlinePassed, passwordHashingSaturated } from "../domain/rules";

/** argon2id cost parameters (config: PASSWORD_HASH_MEMORY_KIB, PASSWORD_HASH_TIME_COST). */
export interface PasswordHashCost {
  memoryKib: number;
  timeCost: number;
}

/** The bounds of the hashing pool (config: PASSWORD_HASH_CONCURRENCY, PASSWORD_HASH_QUEUE_MAX). */
export interface PasswordPoolBounds {
  /** Most hashes or verifications running at once. */
  concurrency: number;
  /** Most waiting for a slot; one more is shed at once. */
  queueMax: number;
}

/** No deadline: the caller set none (gRPC reports Infinity then). */
export const NO_DEADLINE = Infinity;

// `Algorithm` is a const enum, which isolated modules cannot read; 2 is Algorithm.Argon2id.
const ARGON2ID = 2 as NonNullable<Options["algorithm"]>;

/**
 * Hashes and verifies passwords with argon2id (PHC strings carry their own salt and cost,
 * so a cost change applies to new hashes while old ones still verify), in a bounded pool:
 * argon2 is slow and memory-hungry on purpose, so a burst of sign-ups must neither queue
 * without end (each waiting caller would only time out later, and its effect could still
 * happen after its deadline) nor run every hash at once. When every slot and queue place is
 * taken, a call fails at once with `unavailable` (details `retry_after_seconds`); a call whose
 * deadline (epoch ms) passed while it waited fails with `unavailable` without hashing.
 */
export class PasswordHasher {
  private readonly options: Options;
  private readonly limit: LimitFunction;
  private dummyHash: Promise<string> | undefined;

  constructor(
    cost: PasswordHashCost,
    private readonly bounds: PasswordPoolBounds,
  ) {
    this.options = { algorithm: ARGON2ID, memoryCost: cost.memoryKib, timeCost: cost.timeCost, parallelism: 1 };
    this.limit = pLimit(bounds.concurrency);
  }

  /** Hashes a new password. Errors: `unavailable` when the pool is full or `deadlineMs` passed while waiting. */
  hash(password: string, deadlineMs = NO_DEADLINE): Promise<string> {
    return this.inPool(deadlineMs, () => hash(password, this.options));
  }

  /**
   * True when `password` matches `passwordHash`; false for a mismatch or an unreadable hash.
   * Errors: `unavailable` as for `hash`.
   */
  verify(passwordHash: string, password: string, deadlineMs = NO_DEADLINE): Promise<boolean> {
    return this.inPool(deadlineMs, async () => {
      try {
        return await verify(passwordHash, password);
      } catch {
        return false;
      }
    });
  }

  /**
   * Spends the same time as a real verification when there is no account for an email, so
   * the answer's timing does not tell an unknown email from a wrong password.
   */
  async verifyAgainstDummy(password: string, deadlineMs = NO_DEADLINE): Promise<void> {
    this.dummyHash ??= this.hash("tally-dummy-password-for-unknown-emails");
    // A failed first hash (the pool was full) must not be remembered as the dummy for good.
    const dummy = await this.dummyHash.catch((error: unknown) => {
      this.dummyHash = undefined;
      throw error;
    });
    await this.verify(dummy, password, deadlineMs);
  }

  /** Hashes or verifications running and waiting now. */
  get load(): { active: number; waiting: number } {
    return { active: this.limit.activeCount, waiting: this.limit.pendingCount };
  }

  /** Runs `work` in a pool slot, shedding at once when the pool is full. */
  private inPool<T>(deadlineMs: number, work: () => Promise<T>): Promise<T> {
    // p-limit counts a started call as active and a queued one as pending in the same
    // synchronous step, so their sum is exact even for a burst arriving in one tick.
    if (this.limit.activeCount + this.limit.pendingCount >= this.bounds.concurrency + this.bounds.queueMax) {
      return Promise.reject(passwordHashingSaturated());
    }
    return this.limit(() => {
      if (Date.now() >= deadlineMs) throw deadlinePassed();
      return work();
    });
  }
}

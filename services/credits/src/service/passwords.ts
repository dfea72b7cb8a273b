import { hash, verify, type Options } from "@node-rs/argon2";

/** argon2id cost parameters (config: PASSWORD_HASH_MEMORY_KIB, PASSWORD_HASH_TIME_COST). */
export interface PasswordHashCost {
  memoryKib: number;
  timeCost: number;
}

// `Algorithm` is a const enum, which isolated modules cannot read; 2 is Algorithm.Argon2id.
const ARGON2ID = 2 as NonNullable<Options["algorithm"]>;

/**
 * Hashes and verifies passwords with argon2id (PHC strings carry their own salt and cost,
 * so a cost change applies to new hashes while old ones still verify).
 */
export class PasswordHasher {
  private readonly options: Options;
  private dummyHash: Promise<string> | undefined;

  constructor(cost: PasswordHashCost) {
    this.options = { algorithm: ARGON2ID, memoryCost: cost.memoryKib, timeCost: cost.timeCost, parallelism: 1 };
  }

  hash(password: string): Promise<string> {
    return hash(password, this.options);
  }

  /** True when `password` matches `passwordHash`; false for a mismatch or an unreadable hash. */
  async verify(passwordHash: string, password: string): Promise<boolean> {
    try {
      return await verify(passwordHash, password);
    } catch {
      return false;
    }
  }

  /**
   * Spends the same time as a real verification when there is no account for an email, so
   * the answer's timing does not tell an unknown email from a wrong password.
   */
  async verifyAgainstDummy(password: string): Promise<void> {
    this.dummyHash ??= this.hash("tally-dummy-password-for-unknown-emails");
    await this.verify(await this.dummyHash, password);
  }
}

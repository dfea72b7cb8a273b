import type { Logger } from "./logger";

export interface PollingLoopOptions {
  /** Names the loop in logs ("<name> failed; retrying in N ms"). */
  name: string;
  /** Pause after a pass that left nothing waiting, in milliseconds. */
  intervalMs: number;
  /** Longest pause after failures in a row (the pause doubles from `intervalMs` up to this), in milliseconds. */
  backoffMaxMs: number;
  /**
   * Most passes in a row without a pause, however much work is waiting: the bound that keeps
   * one loop from starving the event loop or the database. After that many it pauses
   * `intervalMs` even when its last pass said more was waiting.
   */
  passesInARowMax: number;
}

/**
 * One pass of a loop: does a bounded batch of work and says whether more is waiting now
 * (`true`: go again at once, within `passesInARowMax`). A throw is logged and backed off.
 */
export type LoopPass = () => Promise<boolean>;

/**
 * The one background-loop runner every service uses (expiry sweeper, worker claims, outbox
 * relay, event consumer): runs `pass` until stopped, pauses `intervalMs` when idle, goes again
 * at once while work is waiting (up to `passesInARowMax` passes), backs off exponentially (to
 * `backoffMaxMs`) while passes fail, and can be woken early. `stop()` ends the pause at once and
 * waits for the pass in progress; it never interrupts one.
 */
export class PollingLoop {
  private stopping = false;
  private done: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private failuresInARow = 0;
  /** A wakeUp came while a pass ran: the next pass runs at once. */
  private wokenDuringPass = false;

  constructor(
    private readonly options: PollingLoopOptions,
    private readonly pass: LoopPass,
    private readonly logger: Logger,
  ) {
    if (options.intervalMs < 0 || options.backoffMaxMs < options.intervalMs || options.passesInARowMax < 1) {
      throw new RangeError(`${options.name}: needs 0 <= intervalMs <= backoffMaxMs and passesInARowMax >= 1`);
    }
  }

  /** Starts the loop (again no-op while it runs). The first pass runs at once. */
  start(): void {
    if (this.done) return;
    this.stopping = false;
    this.done = this.run().finally(() => {
      this.done = undefined;
    });
  }

  /**
   * Cuts the current pause short so the next pass runs now (e.g. new work just arrived). Called
   * during a pass, the pass after it runs without a pause: the work may have arrived after the
   * pass looked.
   */
  wakeUp(): void {
    if (this.wake) this.wake();
    else if (this.done) this.wokenDuringPass = true;
  }

  /** Stops after the pass in progress, if any; resolves once the loop has ended. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.done;
  }

  /** True while the loop is started and not stopped. */
  get running(): boolean {
    return this.done !== undefined && !this.stopping;
  }

  private async run(): Promise<void> {
    let passesInARow = 0;
    while (!this.stopping) {
      this.wokenDuringPass = false;
      const more = await this.passOnce();
      passesInARow = more ? passesInARow + 1 : 0;
      if (this.stopping) break;
      if (more && passesInARow < this.options.passesInARowMax) continue;
      passesInARow = 0;
      // Woken while the pass ran (and it did not fail): go again now, the work may be new.
      if (this.wokenDuringPass && this.failuresInARow === 0) continue;
      await this.pause(this.nextPauseMs());
    }
  }

  /** Runs one pass; a failure is logged and counted for the back-off, never thrown. */
  private async passOnce(): Promise<boolean> {
    try {
      const more = await this.pass();
      this.failuresInARow = 0;
      return more;
    } catch (error) {
      this.failuresInARow++;
      this.logger.error({ err: error, loop: this.options.name, retry_in_ms: this.nextPauseMs() }, `${this.options.name} failed; retrying`);
      return false;
    }
  }

  /** `intervalMs`, doubled per failure in a row, capped at `backoffMaxMs`. */
  private nextPauseMs(): number {
    if (this.failuresInARow === 0) return this.options.intervalMs;
    const doublings = Math.min(this.failuresInARow - 1, 30);
    return Math.min(this.options.backoffMaxMs, Math.max(1, this.options.intervalMs) * 2 ** doublings);
  }

  private pause(delayMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(finish, delayMs);
      const self = this;
      function finish(): void {
        clearTimeout(timer);
        self.wake = undefined;
        resolve();
      }
      this.wake = finish;
    });
  }
}

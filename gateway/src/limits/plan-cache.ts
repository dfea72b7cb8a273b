/**
 * An account's plan name, remembered for a short time: the rate limiter needs the plan of
 * every authenticated request, and asking credits each time would double the calls. A plan
 * change reaches the limiter within `ttlMs` (at once on the replica that made it, which
 * forgets the entry). Concurrent misses for one account share one lookup. It holds no billing
 * anchor: limit checks and listings read the account (plan and anchor) from credits each time,
 * so a re-anchoring applies at once on every replica.
 */
export class PlanCache {
  private readonly entries = new Map<string, { plan: Promise<string>; expiresAtMs: number }>();

  /**
   * @param ttlMs how long an answer is reused, in milliseconds (0: never reused)
   * @param entriesMax bound on remembered accounts; the oldest entry goes first
   * @param nowMs the clock, in epoch milliseconds (tests inject it)
   */
  constructor(
    private readonly ttlMs: number,
    private readonly entriesMax = 10_000,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** The account's plan: remembered, else `load()` (a failed load is not remembered; it rejects as `load` did). */
  planOf(accountId: string, load: () => Promise<string>): Promise<string> {
    const now = this.nowMs();
    const entry = this.entries.get(accountId);
    if (entry && entry.expiresAtMs > now) return entry.plan;
    const plan = load();
    this.store(accountId, plan, now);
    plan.catch(() => {
      if (this.entries.get(accountId)?.plan === plan) this.entries.delete(accountId);
    });
    return plan;
  }

  /** Remembers a plan learnt elsewhere (a guest's EnsureGuestAccount answer, a plan change). */
  remember(accountId: string, plan: string): void {
    this.store(accountId, Promise.resolve(plan), this.nowMs());
  }

  /** Forgets an account's plan (a deleted account). */
  forget(accountId: string): void {
    this.entries.delete(accountId);
  }

  private store(accountId: string, plan: Promise<string>, now: number): void {
    if (this.ttlMs === 0) return;
    this.entries.delete(accountId);
    if (this.entries.size >= this.entriesMax) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(accountId, { plan, expiresAtMs: now + this.ttlMs });
  }
}

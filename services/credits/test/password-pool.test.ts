import { credits } from "@tally/contracts";
import { callUnary, DomainError, newId } from "@tally/platform";
import type { PasswordHasher } from "../src/service/passwords";
import { reasonOf, startHarness, type Harness } from "./harness";

/** The outcome of one call and how long it took, in milliseconds. */
interface Timed {
  ok: boolean;
  error?: DomainError;
  elapsedMs: number;
}

async function timed(promise: Promise<unknown>): Promise<Timed> {
  const started = performance.now();
  try {
    await promise;
    return { ok: true, elapsedMs: performance.now() - started };
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    return { ok: false, error, elapsedMs: performance.now() - started };
  }
}

/**
 * Sign-up and sign-in under a burst: password hashing runs in a bounded pool (one slot and two
 * waiting places here, with a hash slow enough that a burst arrives while the first runs), the
 * rest is shed at once with `unavailable`, and no effect happens after the caller's deadline.
 */
describe("credits password hashing pool (real PostgreSQL, gRPC)", () => {
  let h: Harness;
  const password = "correct horse battery";
  const email = () => `burst-${newId()}@example.com`;
  const passwords = () => (h.running.service.accounts as unknown as { passwords: PasswordHasher }).passwords;

  /** Waits until no hash runs or waits (the pool drained). */
  async function poolIdle(): Promise<void> {
    const until = Date.now() + 20_000;
    while (Date.now() < until) {
      const { active, waiting } = passwords().load;
      if (active === 0 && waiting === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error("the password pool did not drain");
  }

  beforeAll(async () => {
    h = await startHarness("credits_pool", {
      PASSWORD_HASH_CONCURRENCY: "1",
      PASSWORD_HASH_QUEUE_MAX: "2",
      PASSWORD_HASH_MEMORY_KIB: "8192",
      PASSWORD_HASH_TIME_COST: "8",
    });
  });
  afterAll(async () => {
    await h?.close();
  });
  afterEach(async () => {
    await poolIdle();
    await h.checkInvariants();
  });

  it("sheds a burst of sign-ups beyond the pool at once with unavailable, while the admitted ones succeed", async () => {
    const emails = Array.from({ length: 12 }, email);
    const results = await Promise.all(emails.map((address) => timed(h.call.createAccount({ email: address, password }))));
    const succeeded = results.filter((r) => r.ok);
    const shed = results.filter((r) => !r.ok);
    expect(succeeded.length).toBeGreaterThanOrEqual(1);
    expect(shed.length).toBeGreaterThanOrEqual(1);
    for (const r of shed) expect(r.error).toMatchObject({ reason: "unavailable", details: { retry_after_seconds: 1 } });
    // Shedding answers without waiting for a slot: faster than the slowest admitted call.
    expect(Math.max(...shed.map((r) => r.elapsedMs))).toBeLessThan(Math.max(...succeeded.map((r) => r.elapsedMs)));
    // A shed request left nothing behind; every admitted one has its account.
    const { rows } = await h.sql.query<{ email: string }>("SELECT email FROM accounts WHERE email = ANY($1)", [emails]);
    const stored = new Set(rows.map((r) => r.email));
    results.forEach((r, i) => expect({ email: emails[i], stored: stored.has(emails[i]!) }).toEqual({ email: emails[i], stored: r.ok }));
  });

  it("sheds a burst of sign-ins beyond the pool the same way, and records no sign-in for a shed one", async () => {
    const address = email();
    const { account } = await h.call.createAccount({ email: address, password });
    const results = await Promise.all(Array.from({ length: 12 }, () => timed(h.call.authenticate({ email: address, password }))));
    expect(results.filter((r) => r.ok).length).toBeGreaterThanOrEqual(1);
    const shed = results.filter((r) => !r.ok);
    expect(shed.length).toBeGreaterThanOrEqual(1);
    for (const r of shed) expect(r.error).toMatchObject({ reason: "unavailable", details: { retry_after_seconds: 1 } });
    const { rows } = await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM idempotency_keys WHERE operation = 'Authenticate'");
    expect(Number(rows[0]!.n)).toBe(results.filter((r) => r.ok).length);
    expect((await h.call.getAccount({ accountId: account!.id })).account!.lastLoginAt).toBeInstanceOf(Date);
  });

  it("creates no account when the caller's deadline expires while its password is hashed", async () => {
    const address = email();
    // A deadline shorter than one hash: the caller gives up first (deadline_exceeded), or the
    // service, seeing too little time left for the effect, sheds it first (unavailable),
    // whichever answer arrives first on a busy machine; either way nothing may be created.
    const request = { requestId: newId(), email: address, password, plan: "", role: credits.Role.ROLE_UNSPECIFIED, adoptGuestId: "" };
    expect(["deadline_exceeded", "unavailable"]).toContain(await reasonOf(callUnary(h.client.createAccount.bind(h.client), request, { timeoutMs: 20 })));
    await poolIdle();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await h.sql.query("SELECT 1 FROM accounts WHERE email = $1", [address])).rows).toHaveLength(0);
    expect((await h.sql.query("SELECT 1 FROM idempotency_keys WHERE request_id = $1", [request.requestId])).rows).toHaveLength(0);
    // The same request with time to spare then succeeds.
    expect((await h.call.createAccount(request)).account!.email).toBe(address);
  });

  it("answers unavailable and does nothing when the deadline has passed by the time hashing finished", async () => {
    const address = email();
    const raw = { requestId: newId(), email: address, password, plan: "", role: "user" as const, adoptGuestId: "" };
    const service = h.running.service;
    expect(await reasonOf(service.createAccount(raw, Date.now() + 50))).toBe("unavailable");
    expect((await h.sql.query("SELECT 1 FROM accounts WHERE email = $1", [address])).rows).toHaveLength(0);
    await service.createAccount(raw);
    const signIn = { requestId: newId(), email: address, password };
    expect(await reasonOf(service.authenticate(signIn, Date.now() - 1))).toBe("unavailable");
    expect((await h.sql.query("SELECT last_login_at FROM accounts WHERE email = $1", [address])).rows).toEqual([{ last_login_at: null }]);
    expect((await h.sql.query("SELECT 1 FROM idempotency_keys WHERE request_id = $1", [signIn.requestId])).rows).toHaveLength(0);
  });
});

/**
 * Sign-up under a burst, through the front door (the stack as `npm start` runs it): 300
 * concurrent POST /v1/auth/register with distinct emails are each answered 201 (the account
 * exists and signs in) or 503 `unavailable` with `Retry-After` (credits' password-hashing pool
 * shed it at once, and no account exists for it) — never 504 or another 5xx. Retried after
 * `Retry-After`, every refused sign-up succeeds: the 503 was honest load shedding, and the
 * burst lost nothing and created nothing it refused. The same with a pool of 1 hash running
 * and 2 waiting, where 503s are certain. And with RATE_LIMIT_AUTH_PER_MINUTE=5, the 6th
 * sign-up from one address within the minute is 429 `rate_limited` and creates nothing.
 */
import { Client } from "pg";
import { callGateway, startStack, type StackUnderTest } from "./stack-under-test";

const PLANS = `
default_plan: free
guest_plan: guest
plans:
  guest: { trial_credits: 1, limits: { generations_per_day: 1, concurrent_generations: 1, requests_per_minute: 100000 } }
  free: { trial_credits: 5, limits: { generations_per_period: 10, concurrent_generations: 1, requests_per_minute: 100000 } }
`;
const PASSWORD = "correct horse battery";
const BURST_SIZE = 300;
/** Refused sign-ups are retried this many at a time: fewer than either pool below holds, so none can be shed again. */
const RETRY_CONCURRENCY = 3;
const PROBLEM_JSON = "application/problem+json";

type Answer = Awaited<ReturnType<typeof callGateway>>;

const register = (stack: StackUnderTest, email: string) => callGateway(stack.base, "POST", "/v1/auth/register", { body: { email, password: PASSWORD } });

/** The emails among `emails` that have an account in the credits database. */
async function emailsWithAccounts(creditsDb: Client, emails: string[]): Promise<Set<string>> {
  const { rows } = await creditsDb.query<{ email: string }>("SELECT email FROM accounts WHERE email = ANY($1)", [emails]);
  return new Set(rows.map((row) => row.email));
}

/** Runs `work` over `items`, `concurrency` at a time, keeping their order. */
async function inBatches<T, R>(items: T[], concurrency: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += concurrency) results.push(...(await Promise.all(items.slice(i, i + concurrency).map(work))));
  return results;
}

/** A 503 from the password pool: problem+json `unavailable` with a whole number of seconds ≥ 1 in Retry-After. */
function expectShed(answer: Answer): number {
  expect(answer.contentType).toContain(PROBLEM_JSON);
  expect(answer.body).toMatchObject({ status: 503, code: "unavailable" });
  const retryAfter = answer.headers.get("retry-after");
  expect(retryAfter).toMatch(/^[1-9][0-9]*$/);
  return Number(retryAfter);
}

/**
 * Sends BURST_SIZE sign-ups with distinct emails at once and checks the burst's promises:
 * 201 or 503 only; each 503 well-formed and without an account; each 201 with one (and a
 * sample of them signs in); then the refused ones, retried after Retry-After, all succeed and
 * the burst's emails have exactly BURST_SIZE accounts. Returns how many were shed.
 */
async function proveBurst(stack: StackUnderTest, creditsDb: Client, label: string): Promise<number> {
  const emails = Array.from({ length: BURST_SIZE }, (_, i) => `${label}-${stack.suffix}-${i}@example.com`);
  const answers = await Promise.all(emails.map((email) => register(stack, email)));

  const counts = new Map<number, number>();
  for (const answer of answers) counts.set(answer.status, (counts.get(answer.status) ?? 0) + 1);
  const others = answers.filter((a) => a.status !== 201 && a.status !== 503).map((a) => `${a.status} ${a.body?.code}`);
  process.stdout.write(`${label}: ${BURST_SIZE} concurrent sign-ups answered ${JSON.stringify(Object.fromEntries(counts))}\n`);
  expect(others).toEqual([]);

  const created = emails.filter((_, i) => answers[i].status === 201);
  const refused = emails.filter((_, i) => answers[i].status === 503);
  const retryAfterSeconds = Math.max(0, ...answers.filter((a) => a.status === 503).map(expectShed));
  for (const [i, answer] of answers.entries()) {
    if (answer.status === 201) expect(answer.body.user.email).toBe(emails[i]);
  }

  // Loses nothing: every 201 has its account; creates nothing it refused: no 503 has one.
  const existing = await emailsWithAccounts(creditsDb, emails);
  expect(created.filter((email) => !existing.has(email))).toEqual([]);
  expect(refused.filter((email) => existing.has(email))).toEqual([]);
  for (const email of created.slice(0, RETRY_CONCURRENCY)) {
    expect((await callGateway(stack.base, "POST", "/v1/auth/login", { body: { email, password: PASSWORD } })).status).toBe(200);
  }

  // Honest shedding: after Retry-After, each refused sign-up goes through.
  await new Promise((resolve) => setTimeout(resolve, retryAfterSeconds * 1000));
  const retries = await inBatches(refused, RETRY_CONCURRENCY, (email) => register(stack, email));
  expect(retries.map((r) => r.status)).toEqual(refused.map(() => 201));
  const { rows } = await creditsDb.query("SELECT count(*)::int AS n, count(DISTINCT email)::int AS emails FROM accounts WHERE email = ANY($1)", [emails]);
  expect(rows[0]).toEqual({ n: BURST_SIZE, emails: BURST_SIZE });
  return refused.length;
}

/** Starts a stack with `env` and connects to its credits database. */
async function stackWithCreditsDb(env: Record<string, string>): Promise<{ stack: StackUnderTest; creditsDb: Client }> {
  const stack = await startStack(PLANS, env);
  const creditsDb = new Client({ connectionString: stack.databaseUrl("credits") });
  await creditsDb.connect();
  return { stack, creditsDb };
}

describe("sign-up under a burst of 300 (through the gateway)", () => {
  let defaultPool: { stack: StackUnderTest; creditsDb: Client };
  let smallPool: { stack: StackUnderTest; creditsDb: Client };

  beforeAll(async () => {
    defaultPool = await stackWithCreditsDb({});
    // 1 hash running and 2 waiting: a burst of 300 is certain to be shed in part.
    smallPool = await stackWithCreditsDb({ PASSWORD_HASH_CONCURRENCY: "1", PASSWORD_HASH_QUEUE_MAX: "2" });
  }, 300_000);

  afterAll(async () => {
    for (const started of [defaultPool, smallPool]) {
      await started?.creditsDb.end();
      await started?.stack.destroy();
    }
  }, 90_000);

  it("answers each with 201 or 503 `unavailable` (default pool), creates exactly the 201s, and a retry of each 503 succeeds", async () => {
    await proveBurst(defaultPool.stack, defaultPool.creditsDb, "burst-default");
  }, 120_000);

  it("sheds with 503 `unavailable` and Retry-After when the pool is 1 running and 2 waiting, creating none of the shed", async () => {
    const shed = await proveBurst(smallPool.stack, smallPool.creditsDb, "burst-small");
    expect(shed).toBeGreaterThan(0);
  }, 120_000);
});

describe("sign-up limited per client IP (RATE_LIMIT_AUTH_PER_MINUTE=5)", () => {
  const AUTH_PER_MINUTE = 5;
  let limited: { stack: StackUnderTest; creditsDb: Client };

  beforeAll(async () => {
    limited = await stackWithCreditsDb({ RATE_LIMIT_AUTH_PER_MINUTE: String(AUTH_PER_MINUTE) });
  }, 150_000);

  afterAll(async () => {
    await limited?.creditsDb.end();
    await limited?.stack.destroy();
  }, 60_000);

  it("answers the 6th sign-up from one address within the minute with 429 `rate_limited`, Retry-After and RateLimit-*, and creates no account for it", async () => {
    const { stack, creditsDb } = limited;
    const emails = Array.from({ length: AUTH_PER_MINUTE + 1 }, (_, i) => `limited-${stack.suffix}-${i}@example.com`);
    const answers: Answer[] = [];
    for (const email of emails) answers.push(await register(stack, email));
    expect(answers.map((a) => a.status)).toEqual([...Array(AUTH_PER_MINUTE).fill(201), 429]);

    const refused = answers[AUTH_PER_MINUTE];
    expect(refused.contentType).toContain(PROBLEM_JSON);
    expect(refused.body).toMatchObject({ status: 429, code: "rate_limited", limit: AUTH_PER_MINUTE });
    const retryAfter = refused.headers.get("retry-after");
    expect(retryAfter).toMatch(/^[1-9][0-9]*$/);
    expect(Number(retryAfter)).toBeLessThanOrEqual(60);
    expect(refused.headers.get("ratelimit-limit")).toBe(String(AUTH_PER_MINUTE));
    expect(refused.headers.get("ratelimit-remaining")).toBe("0");
    expect(refused.headers.get("ratelimit-reset")).toBe(retryAfter);
    expect(refused.headers.get("ratelimit-policy")).toBe(`${AUTH_PER_MINUTE};w=60`);

    const existing = await emailsWithAccounts(creditsDb, emails);
    expect(emails.filter((email) => existing.has(email))).toEqual(emails.slice(0, AUTH_PER_MINUTE));
  }, 60_000);
});

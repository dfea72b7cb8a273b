/**
 * Plan limits under concurrency, through the front door (the stack as `npm start` runs it):
 * 100 concurrent POST /v1/generations for a user with 7 generations left in the period give
 * exactly 7 × 201 and 93 × 403 `plan_limit_exceeded`; the same for a guest with 7 left today
 * gives 7 × 201 and 93 × 429 `guest_limit_exceeded` with Retry-After. No counter ever passes
 * its limit, and once the jobs end, `used` equals what the usage log says for the window.
 */
import { Client } from "pg";
import { newId } from "@tally/platform";
import { eventually } from "@tally/platform/src/testing";
import { callGateway, startStack, type CallOptions, type StackUnderTest } from "./stack-under-test";

const LIMIT = 10;
const USED_BEFORE = 3;
const CONCURRENT_REQUESTS = 100;
/** Credits never bite first (a text generation costs 1); concurrency and rate limits never bite. */
const PLANS = `
default_plan: free
guest_plan: guest
plans:
  guest: { trial_credits: 50, limits: { generations_per_day: ${LIMIT}, concurrent_generations: 500, requests_per_minute: 100000 } }
  free: { trial_credits: 50, limits: { generations_per_period: ${LIMIT}, concurrent_generations: 500, requests_per_minute: 100000 } }
`;

describe("plan limits under 100 concurrent requests (through the gateway)", () => {
  let stack: StackUnderTest;
  let usageDb: Client;

  beforeAll(async () => {
    stack = await startStack(PLANS, { PRICING_CREDITS: JSON.stringify({ text: 1, photo: 1, address: 1 }), DOWNSTREAM_TIMEOUT_MS: "30000" });
    usageDb = new Client({ connectionString: stack.databaseUrl("usage") });
    await usageDb.connect();
  }, 150_000);

  afterAll(async () => {
    await usageDb?.end();
    await stack?.destroy();
  }, 60_000);

  const call = <T = any>(method: string, route: string, options: CallOptions = {}) => callGateway<T>(stack.base, method, route, options);
  const create = (who: CallOptions, prompt: string) => call("POST", "/v1/generations", { ...who, body: { input_type: "text", prompt } });

  /** Waits until every generation of the caller has ended and usage has counted them all. */
  async function settled(who: CallOptions, limitName: string, total: number) {
    return eventually(async () => {
      const list = await call("GET", "/v1/generations?limit=100", who);
      const items = list.body.items as { status: string }[];
      if (list.body.total !== total || !items.every((g) => g.status === "completed" || g.status === "failed")) return undefined;
      const limit = (await call("GET", "/v1/usage/limits", who)).body.limits.find((l: { name: string }) => l.name === limitName);
      const completed = items.filter((g) => g.status === "completed").length;
      return limit.reserved === 0 && limit.used === completed ? { limit, completed } : undefined;
    }, 120_000, 250);
  }

  /** The highest used + reserved any counter row of the subject ever holds is checked by the CHECKs and here at the end. */
  async function countersOf(subjectId: string): Promise<{ period: number; day: number }> {
    const period = await usageDb.query("SELECT coalesce(max(generations + reserved_generations), 0) AS n FROM period_usage WHERE subject_id = $1", [subjectId]);
    const day = await usageDb.query("SELECT coalesce(max(generations + reserved_generations), 0) AS n FROM daily_usage WHERE subject_id = $1", [subjectId]);
    return { period: Number(period.rows[0].n), day: Number(day.rows[0].n) };
  }

  /** The usage log's own count of completed generations of the subject. */
  async function loggedCompletions(subjectId: string): Promise<number> {
    const { rows } = await usageDb.query("SELECT count(*) AS n FROM usage_log WHERE user_id = $1 AND outcome = 'completed'", [subjectId]);
    return Number(rows[0].n);
  }

  /** Sends 100 creates at once and groups the answers by status. */
  async function burst(who: CallOptions) {
    const answers = await Promise.all(Array.from({ length: CONCURRENT_REQUESTS }, (_, i) => create(who, `a burst ${i}`)));
    const byStatus = new Map<number, typeof answers>();
    for (const answer of answers) byStatus.set(answer.status, [...(byStatus.get(answer.status) ?? []), answer]);
    return byStatus;
  }

  it("lets exactly the 7 a user has left through and answers the other 93 with 403 and the limit's details", async () => {
    const registered = await call("POST", "/v1/auth/register", { body: { email: `load-${newId()}@example.com`, password: "correct horse battery" } });
    const user = { token: registered.body.access_token as string };
    for (let i = 0; i < USED_BEFORE; i++) expect((await create(user, `before ${i}`)).status).toBe(201);
    await settled(user, "generations_per_period", USED_BEFORE);

    const byStatus = await burst(user);
    expect([...byStatus.keys()].sort()).toEqual([201, 403]);
    expect(byStatus.get(201)).toHaveLength(LIMIT - USED_BEFORE);
    expect(byStatus.get(403)).toHaveLength(CONCURRENT_REQUESTS - (LIMIT - USED_BEFORE));
    for (const refused of byStatus.get(403)!) {
      expect(refused.contentType).toContain("application/problem+json");
      expect(refused.body).toMatchObject({ code: "plan_limit_exceeded", limit_name: "generations_per_period", plan: "free", limit: LIMIT });
      expect(refused.body.used + refused.body.reserved).toBe(LIMIT);
      expect(typeof refused.body.period_start).toBe("string");
      expect(typeof refused.body.resets_at).toBe("string");
    }

    const { limit, completed } = await settled(user, "generations_per_period", LIMIT);
    expect(limit).toMatchObject({ limit: LIMIT, used: completed, reserved: 0 });
    const subjectId = registered.body.user.id as string;
    expect(await loggedCompletions(subjectId)).toBe(completed);
    expect((await countersOf(subjectId)).period).toBeLessThanOrEqual(LIMIT);
  }, 240_000);

  it("lets exactly the 7 a guest has left today through and answers the other 93 with 429 and Retry-After", async () => {
    const guest = { guestId: newId() };
    for (let i = 0; i < USED_BEFORE; i++) expect((await create(guest, `before ${i}`)).status).toBe(201);
    await settled(guest, "generations_per_day", USED_BEFORE);

    const byStatus = await burst(guest);
    expect([...byStatus.keys()].sort()).toEqual([201, 429]);
    expect(byStatus.get(201)).toHaveLength(LIMIT - USED_BEFORE);
    expect(byStatus.get(429)).toHaveLength(CONCURRENT_REQUESTS - (LIMIT - USED_BEFORE));
    for (const refused of byStatus.get(429)!) {
      expect(refused.body).toMatchObject({ code: "guest_limit_exceeded", limit_name: "generations_per_day", plan: "guest", limit: LIMIT });
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    }

    const { limit, completed } = await settled(guest, "generations_per_day", LIMIT);
    expect(limit).toMatchObject({ limit: LIMIT, used: completed, reserved: 0 });
    expect(await loggedCompletions(guest.guestId)).toBe(completed);
    expect((await countersOf(guest.guestId)).day).toBeLessThanOrEqual(LIMIT);
  }, 240_000);
});

/**
 * Erasure without losing a fact, through the front door (scripts/stack.ts as a child process,
 * on its own databases, streams and ports): a user makes generations (completed and failed,
 * text, photo and address), then deletes their account. Sign-in fails and the old token gets
 * 401; the ledger shows the write-off and the balances are zero; the usage log, the user's
 * stats and the limits counters are unchanged to the unit; and no personal data of theirs
 * remains in any database (each one queried directly). A repeated delete answers the same; an
 * admin deletes another user's account; a non-admin gets 403.
 */
import { Client } from "pg";
import { eventually, uniqueSuffix } from "@tally/platform/src/testing";
import { callGateway, startStack, type CallOptions, type StackUnderTest } from "./stack-under-test";

const FAULT_MARKER = "[fault:provider_error]";
const PASSWORD = "correct horse battery";
const PLANS = `
default_plan: free
guest_plan: guest
plans:
  guest: { trial_credits: 3, limits: { generations_per_day: 3, concurrent_generations: 3, requests_per_minute: 1000 } }
  free: { trial_credits: 20, limits: { generations_per_period: 100, concurrent_generations: 20, requests_per_minute: 1000 } }
`;

/** Rows of `sql` on the database at `url`. */
async function query<T = any>(url: string, sql: string, values: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, values)).rows as T[];
  } finally {
    await client.end();
  }
}

describe("account erasure keeps every fact (npm start, driven over HTTP)", () => {
  let stack: StackUnderTest;
  let adminEmail: string;

  beforeAll(async () => {
    adminEmail = `admin-${uniqueSuffix()}@example.com`;
    stack = await startStack(PLANS, {
      FAULT_INJECTION_ENABLED: "true",
      PRICING_CREDITS: JSON.stringify({ text: 1, photo: 2, address: 2 }),
      TALLY_ADMIN_EMAILS: adminEmail,
    });
  }, 150_000);

  afterAll(async () => {
    await stack?.destroy();
  }, 60_000);

  const call = <T = any>(method: string, route: string, options: CallOptions = {}) => callGateway<T>(stack.base, method, route, options);

  const register = async (email: string) => {
    const response = await call("POST", "/v1/auth/register", { body: { email, password: PASSWORD } });
    expect(response.status).toBe(201);
    return { id: response.body.user.id as string, token: response.body.access_token as string, email };
  };

  /** Creates a generation and waits until it has finished; returns its final state. */
  const generate = async (token: string, body: Record<string, string>) => {
    const created = await call("POST", "/v1/generations", { token, body });
    expect(created.status).toBe(201);
    return eventually(async () => {
      const response = await call("GET", `/v1/generations/${created.body.id}`, { token });
      return ["completed", "failed"].includes(response.body.status) ? response.body : undefined;
    }, 60_000, 250);
  };

  /** Everything the usage database holds of `userId`, in a stable order. */
  const usageFacts = async (userId: string) => ({
    log: await query(stack.databaseUrl("usage"), "SELECT * FROM usage_log WHERE user_id = $1 ORDER BY id", [userId]),
    stats: await query(stack.databaseUrl("usage"), "SELECT * FROM user_stats WHERE user_id = $1", [userId]),
    periods: await query(stack.databaseUrl("usage"), "SELECT * FROM period_usage WHERE subject_id = $1 ORDER BY 1, 2", [userId]).catch(() => []),
  });

  it("erases a user's personal data everywhere and keeps every fact", async () => {
    const alice = await register(`alice-${stack.suffix}@example.com`);
    const token = alice.token;
    const jobs = [
      await generate(token, { input_type: "text", prompt: "a lighthouse at dusk", style: "watercolor" }),
      await generate(token, { input_type: "photo", photo_url: "https://example.com/alice-face.jpg" }),
      await generate(token, { input_type: "address", address: "12 Private Lane, Springfield" }),
      await generate(token, { input_type: "text", prompt: `a failing job ${FAULT_MARKER}` }),
    ];
    expect(jobs.map((j) => j.status)).toEqual(["completed", "completed", "completed", "failed"]);
    const output = await fetch(`${stack.base}/v1/generations/${jobs[0].id}/output`, { headers: { authorization: `Bearer ${token}` } });
    expect(output.status).toBe(200);

    // What the gateway shows before, and the usage facts (once the usage log has all 4 entries).
    // The usage service records the events a moment after the jobs end and the download: wait for all five.
    const meBefore = await eventually(async () => {
      const body = (await call("GET", "/v1/me", { token })).body;
      return body.stats.total_generations + body.stats.total_failed === 4 && body.stats.total_downloaded === 1 ? body : undefined;
    }, 20_000, 100);
    expect(meBefore.stats).toMatchObject({ total_generations: 3, total_failed: 1, total_credits_spent: 5 });
    const limitsBefore = (await call("GET", "/v1/usage/limits", { token })).body;
    const balanceBefore = (await call("GET", "/v1/credits/balance", { token })).body;
    expect(balanceBefore.total_available).toBe(15);
    await eventually(async () => ((await usageFacts(alice.id)).log.length === 4 ? true : undefined), 30_000, 200);
    const factsBefore = await usageFacts(alice.id);
    const generationFactsBefore = await query(
      stack.databaseUrl("generations"),
      "SELECT id, user_id, status, input_type, credit_cost, credit_type, cost_micros, processing_time_ms, provider, created_at, completed_at FROM generations WHERE user_id = $1 ORDER BY id",
      [alice.id],
    );
    expect(generationFactsBefore).toHaveLength(4);

    // Delete: 204; a repeat with the same (now dead) token answers the same.
    const deleted = await call("DELETE", "/v1/me", { token });
    expect(deleted.status).toBe(204);
    expect((await call("DELETE", "/v1/me", { token })).status).toBe(204);

    // Sign-in stops at once; the old token gets 401 on every route.
    const login = await call("POST", "/v1/auth/login", { body: { email: alice.email, password: PASSWORD } });
    expect(login.status).toBe(401);
    for (const route of ["/v1/me", "/v1/credits/balance", "/v1/generations", "/v1/usage/limits"]) {
      const response = await call("GET", route, { token });
      expect({ route, status: response.status, code: response.body?.code }).toEqual({ route, status: 401, code: "unauthenticated" });
    }

    // Credits: credentials erased, remaining credits written off with ledger entries, balances zero.
    const [account] = await query(stack.databaseUrl("credits"), "SELECT * FROM accounts WHERE id = $1", [alice.id]);
    expect(account).toMatchObject({ email: null, password_hash: null, available_credits: "0", held_credits: "0", written_off_credits: "15" });
    expect(account.deleted_at).not.toBeNull();
    const writeOffs = await query(stack.databaseUrl("credits"), "SELECT amount, written_off_change FROM ledger_entries WHERE account_id = $1 AND kind = 'write_off'", [alice.id]);
    expect(writeOffs.reduce((sum, e) => sum - Number(e.amount), 0)).toBe(15);
    const [captured] = await query(stack.databaseUrl("credits"), "SELECT coalesce(sum(captured_change), 0) AS captured FROM ledger_entries WHERE account_id = $1", [alice.id]);
    expect(captured.captured).toBe("5");
    expect(await query(stack.databaseUrl("credits"), "SELECT 1 FROM accounts WHERE email = $1", [alice.email])).toEqual([]);

    // Generations: prompts, photo URLs, addresses, styles and outputs erased (once the event is consumed); facts kept.
    await eventually(async () => {
      const rows = await query(stack.databaseUrl("generations"), "SELECT erased_at FROM generations WHERE user_id = $1", [alice.id]);
      return rows.every((r) => r.erased_at !== null) ? true : undefined;
    }, 30_000, 200);
    const personal = await query(
      stack.databaseUrl("generations"),
      "SELECT id FROM generations WHERE user_id = $1 AND (prompt <> '' OR photo_url <> '' OR address <> '' OR style <> '')",
      [alice.id],
    );
    expect(personal).toEqual([]);
    const outputs = await query(stack.databaseUrl("generations"), "SELECT o.generation_id FROM generation_outputs o JOIN generations g ON g.id = o.generation_id WHERE g.user_id = $1", [alice.id]);
    expect(outputs).toEqual([]);
    expect(
      await query(
        stack.databaseUrl("generations"),
        "SELECT id, user_id, status, input_type, credit_cost, credit_type, cost_micros, processing_time_ms, provider, created_at, completed_at FROM generations WHERE user_id = $1 ORDER BY id",
        [alice.id],
      ),
    ).toEqual(generationFactsBefore);
    // Nothing in any database still holds her email or her inputs.
    for (const service of ["credits", "generations", "usage"] as const) {
      const dump = JSON.stringify(
        await query(stack.databaseUrl(service), "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").then(async (tables) => {
          const contents: unknown[] = [];
          for (const { table_name } of tables) contents.push(await query(stack.databaseUrl(service), `SELECT * FROM "${table_name}"`));
          return contents;
        }),
        // bytea (stored answers, event payloads, outputs) as text, so that what they hold is searched too.
        (_key, value) => (value?.type === "Buffer" && Array.isArray(value.data) ? Buffer.from(value.data).toString("latin1") : value),
      );
      for (const secret of [alice.email, "a lighthouse at dusk", "watercolor", "alice-face.jpg", "12 Private Lane"]) {
        expect({ service, secret, found: dump.includes(secret) }).toEqual({ service, secret, found: false });
      }
    }

    // Usage: every fact unchanged to the unit, still under the (now anonymous) account id.
    expect(await usageFacts(alice.id)).toEqual(factsBefore);
    expect(factsBefore.stats[0]).toMatchObject({ total_generations: "3", total_failed: "1", total_credits_spent: "5" });
    expect(limitsBefore.limits).toBeDefined();

    // The email can sign up again: a new account, a new id, nothing of the old one.
    const reborn = await register(alice.email);
    expect(reborn.id).not.toBe(alice.id);
    expect((await call("GET", "/v1/generations", { token: reborn.token })).body.items ?? []).toEqual([]);
  }, 180_000);

  it("lets an admin delete another user's account (idempotent), and nobody else", async () => {
    const admin = await register(adminEmail);
    const bob = await register(`bob-${stack.suffix}@example.com`);
    const carol = await register(`carol-${stack.suffix}@example.com`);
    await generate(bob.token, { input_type: "text", prompt: "bob's secret garden" });

    const forbidden = await call("DELETE", `/v1/admin/accounts/${bob.id}`, { token: carol.token });
    expect({ status: forbidden.status, code: forbidden.body.code }).toEqual({ status: 403, code: "forbidden" });
    expect((await call("GET", "/v1/me", { token: bob.token })).status).toBe(200);

    expect((await call("DELETE", `/v1/admin/accounts/${bob.id}`, { token: admin.token })).status).toBe(204);
    expect((await call("DELETE", `/v1/admin/accounts/${bob.id}`, { token: admin.token })).status).toBe(204);
    expect((await call("GET", "/v1/me", { token: bob.token })).status).toBe(401);
    const unknown = await call("DELETE", "/v1/admin/accounts/5f0c7c52-4f0e-4a53-9d43-6d2f1c0b7a11", { token: admin.token });
    expect({ status: unknown.status, code: unknown.body.code }).toEqual({ status: 404, code: "not_found" });
    expect((await call("DELETE", "/v1/admin/accounts/not-a-uuid", { token: admin.token })).status).toBe(404);
    expect((await call("DELETE", `/v1/admin/accounts/${bob.id}`)).status).toBe(401);

    await eventually(async () => {
      const rows = await query(stack.databaseUrl("generations"), "SELECT prompt FROM generations WHERE user_id = $1", [bob.id]);
      return rows.length === 1 && rows[0].prompt === "" ? true : undefined;
    }, 30_000, 200);
    // Carol and the admin are untouched.
    expect((await call("GET", "/v1/me", { token: carol.token })).status).toBe(200);
  }, 120_000);
});

import { credits } from "@tally/contracts";
import { newId } from "@tally/platform";
import { runRepositoryScript } from "@tally/platform/src/testing";
import { startHarness, type Harness } from "./harness";

/** Runs `npm run admin -- <args>` as an operator would (node --import tsx scripts/admin.ts). */
const runAdmin = (args: string[], env: Record<string, string>) => runRepositoryScript("scripts/admin.ts", args, env);

describe("npm run admin -- promote <email> (against the harness' credits service)", () => {
  let h: Harness;
  let env: Record<string, string>;

  beforeAll(async () => {
    h = await startHarness("credits_admin_cli");
    env = { CREDITS_GRPC_ADDRESS: `127.0.0.1:${h.running.grpcPort}` };
  });
  afterAll(async () => {
    await h?.close();
  });

  it("promotes an existing account to admin and prints it", async () => {
    const address = `ops-${newId()}@example.com`;
    const { account } = await h.call.createAccount({ email: address, password: "correct horse battery" });
    expect(account!.role).toBe(credits.Role.ROLE_USER);
    const run = await runAdmin(["promote", address.toUpperCase()], env);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(JSON.parse(run.stdout)).toMatchObject({ id: account!.id, email: address, role: "ROLE_ADMIN", kind: "ACCOUNT_KIND_USER", plan: "free" });
    expect((await h.call.getAccount({ accountId: account!.id })).account!.role).toBe(credits.Role.ROLE_ADMIN);
  });

  it("exits 1 with the reason for an unknown email, a malformed one and a wrong command line", async () => {
    const unknown = await runAdmin(["promote", `nobody-${newId()}@example.com`], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("not_found");
    const malformed = await runAdmin(["promote", "not-an-email"], env);
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toContain("validation");
    const usage = await runAdmin(["demote"], env);
    expect(usage.code).toBe(1);
    expect(usage.stderr).toContain("usage: npm run admin -- promote <email>");
  });
});

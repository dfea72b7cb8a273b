import { credits } from "@tally/contracts";
import { callUnary, createGrpcClient, getFreePort, newId, spawnService, waitForGrpcServing } from "@tally/platform";
import { createTestDatabase } from "@tally/platform/src/testing";
import { writePlansFile } from "./harness";

/** main.ts as ops (and the other services' tests) run it: a child process configured by env only. */
describe("credits main.ts", () => {
  it("migrates, serves, and stops cleanly on SIGTERM", async () => {
    const database = await createTestDatabase("credits_main");
    const port = await getFreePort();
    const service = spawnService("credits", "services/credits/main.ts", {
      DATABASE_URL: database.url,
      GRPC_PORT: String(port),
      TRIAL_CREDITS: "3",
    });
    const client = createGrpcClient(credits.CreditsServiceClient, `127.0.0.1:${port}`);
    try {
      await waitForGrpcServing(`127.0.0.1:${port}`, 30_000);
      const created = await callUnary(
        client.createAccount.bind(client),
        { requestId: newId(), email: `main-${newId()}@example.com`, password: "a long enough password", plan: "", role: credits.Role.ROLE_UNSPECIFIED, adoptGuestId: "" },
        { timeoutMs: 10_000 },
      );
      expect(created.balance!.availableCredits).toBe(3n);
      expect(created.account!.role).toBe(credits.Role.ROLE_USER);
    } finally {
      client.close();
      const code = await service.stop();
      await database.drop();
      expect(code).toBe(0);
    }
  });

  it("refuses to start on a bad configuration", async () => {
    // PLAN_TRIAL_CREDITS is gone (the plans file replaces it); TRIAL_CREDITS is still a checked number.
    const service = spawnService("credits", "services/credits/main.ts", { TRIAL_CREDITS: "not a number", GRPC_PORT: "0" });
    const code = await new Promise<number | null>((resolve) => service.child.once("exit", (c) => resolve(c)));
    expect(code).toBe(1);
  });

  it("refuses to start on a bad plans file, naming the bad key", async () => {
    const plansFile = writePlansFile("default_plan: free\nguest_plan: guest\nplans:\n  free: { trial_credits: -1 }\n  guest: { trial_credits: 3 }\n", "plans.yaml");
    const service = spawnService("credits", "services/credits/main.ts", { PLANS_FILE: plansFile, GRPC_PORT: "0", LOG_LEVEL: "info" });
    let output = "";
    for (const stream of [service.child.stdout, service.child.stderr]) stream?.on("data", (chunk: Buffer) => void (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => service.child.once("exit", (c) => resolve(c)));
    expect(code).toBe(1);
    expect(output).toContain("plans.free.trial_credits");
    expect(output).toContain(plansFile);
  });
});

import * as grpc from "@grpc/grpc-js";
import { DriverException } from "@mikro-orm/postgresql";
import { createLogger, type Logger } from "@tally/platform";
import { bindCreditsService } from "../src/grpc/handlers";
import type { CreditsService } from "../src/service/credits-service";
import { HoldExpirySweeper } from "../src/runners/hold-expiry-sweeper";
import { startHarness, type Harness } from "./harness";

/** Logs of unexpected database errors must not carry the SQL and its parameters (emails, password hashes). */
describe("credits logs of database errors", () => {
  let h: Harness;
  const secret = "victim@example.com $argon2id$v=19$m=1024,t=1,p=1$c2VjcmV0";

  beforeAll(async () => {
    h = await startHarness("credits_logging");
  });
  afterAll(async () => {
    await h?.close();
  });

  /** A real DriverException from PostgreSQL whose statement carries `secret`. */
  async function driverError(): Promise<DriverException> {
    const em = h.running.orm.em;
    const error = await em.fork().execute("SELECT ?::int AS n", [secret]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DriverException);
    expect(String((error as Error).message)).toContain(secret);
    return error as DriverException;
  }

  function capturingLogger(): { logger: Logger; lines: string[] } {
    const lines: string[] = [];
    // The platform logger as every service builds it (its serializers redact database errors).
    return { logger: createLogger("credits-test", "debug", { write: (line: string) => void lines.push(line) }), lines };
  }

  it("logs a failed RPC's database error by name and code, without the statement", async () => {
    const error = await driverError();
    const { logger, lines } = capturingLogger();
    const failing = { createAccount: () => Promise.reject(error) } as unknown as CreditsService;
    const server = bindCreditsService(failing, logger);
    const answer = await new Promise<grpc.ServiceError | null>((resolve) =>
      server.createAccount(
        { request: { requestId: "r", email: "victim@example.com", password: "pw", plan: "", role: 0 }, metadata: new grpc.Metadata(), getDeadline: () => Infinity } as never,
        ((err: grpc.ServiceError | null) => resolve(err)) as never,
      ),
    );
    expect(answer).toMatchObject({ code: grpc.status.INTERNAL });
    const logged = lines.join("\n");
    expect(logged).toContain("unexpected error in handler");
    expect(logged).toContain("22P02");
    expect(logged).toContain(error.name);
    expect(logged).not.toContain("victim@example.com");
    expect(logged).not.toContain("$argon2id$");
    expect(logged).not.toContain("SELECT");
  });

  it("logs a failed expiry sweep's database error by name and code, without the statement", async () => {
    const error = await driverError();
    const { logger, lines } = capturingLogger();
    const failing = { expireDueHolds: () => Promise.reject(error) } as unknown as CreditsService;
    const sweeper = new HoldExpirySweeper(failing, { intervalMs: 10, batchSize: 1 }, logger);
    sweeper.start();
    const deadline = Date.now() + 5_000;
    while (!lines.some((l) => l.includes("hold expiry sweep failed")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await sweeper.stop();
    const logged = lines.join("\n");
    expect(logged).toContain("hold expiry sweep failed");
    expect(logged).toContain("22P02");
    expect(logged).not.toContain("victim@example.com");
    expect(logged).not.toContain("$argon2id$");
    expect(logged).not.toContain("SELECT");
  });
});

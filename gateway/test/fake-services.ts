/**
 * Fake credits, generations and usage gRPC services for the gateway's own tests: just enough
 * behaviour to drive guests, plans, limits and error mapping without databases. Every call is
 * recorded (`calls`), and a test may make the next answers of a method fail (`failWith`).
 */
import * as grpc from "@grpc/grpc-js";
import { credits, generations, usage } from "@tally/contracts";
import { bindService, createLogger, DomainError, type AsyncService } from "@tally/platform";

export const ANCHOR = new Date("2026-11-01T00:00:00.000Z");

export interface FakeServices {
  address: string;
  accounts: Map<string, credits.Account>;
  calls: { method: string; request: unknown }[];
  /** The next calls of `method` fail with `error` (until cleared with undefined). */
  failWith(method: string, error: DomainError | undefined): void;
  addAccount(account: Partial<credits.Account> & { id: string }): credits.Account;
  close(): Promise<void>;
}

const account = (fields: Partial<credits.Account> & { id: string }): credits.Account => ({
  email: "",
  plan: "free",
  role: credits.Role.ROLE_USER,
  createdAt: ANCHOR,
  lastLoginAt: undefined,
  currentPeriodStart: ANCHOR,
  kind: credits.AccountKind.ACCOUNT_KIND_USER,
  adoptedBy: "",
  ...fields,
});

const balance: credits.Balance = { trialCredits: 3n, tokenCredits: 0n, heldCredits: 0n, availableCredits: 3n };

function generation(userId: string): generations.Generation {
  return {
    id: "0d6f3a4e-9a43-4b8e-8f0a-2b8c1e1d9f10", userId, status: generations.GenerationStatus.GENERATION_STATUS_PENDING,
    inputType: generations.InputType.INPUT_TYPE_TEXT, prompt: "p", photoUrl: "", address: "", style: "", creditCost: 1n,
    creditType: generations.CreditType.CREDIT_TYPE_TRIAL, holdId: "", progressPercent: 0, outputContentType: "", errorMessage: "",
    provider: "", costMicros: 0n, processingTimeMs: 0n, createdAt: ANCHOR, startedAt: undefined, completedAt: undefined,
  };
}

/** Starts the three fakes on one gRPC server at a free local port. */
export async function startFakeServices(): Promise<FakeServices> {
  const accounts = new Map<string, credits.Account>();
  const calls: FakeServices["calls"] = [];
  const failures = new Map<string, DomainError>();
  const found = (id: string) => {
    const value = accounts.get(id);
    if (!value) throw new DomainError("not_found", `account ${id} not found`);
    return value;
  };
  // Each handler records its call and fails when told to, before doing anything.
  const recorded = <T extends object>(implementation: T): T =>
    Object.fromEntries(
      Object.entries(implementation).map(([method, fn]) => [
        method,
        async (request: unknown, ctx: unknown) => {
          calls.push({ method, request });
          const failure = failures.get(method);
          if (failure) throw failure;
          return (fn as (request: unknown, ctx: unknown) => Promise<unknown>)(request, ctx);
        },
      ]),
    ) as T;

  const creditsImpl: Partial<AsyncService<credits.CreditsServiceServer>> = {
    getAccount: async ({ accountId }) => ({ account: found(accountId) }),
    getBalance: async ({ accountId }) => (found(accountId), { balance }),
    ensureGuestAccount: async ({ guestId }) => {
      const existing = accounts.get(guestId);
      if (existing && (existing.kind !== credits.AccountKind.ACCOUNT_KIND_GUEST || existing.adoptedBy !== "")) {
        throw new DomainError("unauthenticated", "this guest id no longer works");
      }
      const guest = existing ?? account({ id: guestId, plan: "guest", kind: credits.AccountKind.ACCOUNT_KIND_GUEST });
      accounts.set(guestId, guest);
      return { account: guest, balance, created: !existing };
    },
    setPlan: async ({ accountId, plan }) => {
      const updated = { ...found(accountId), plan };
      accounts.set(accountId, updated);
      return { account: updated };
    },
    createAccount: async ({ email, adoptGuestId }) => {
      const created = account({ id: "5a1d9b7e-3c1f-4d2a-9e8b-7f6a5b4c3d2e", email });
      accounts.set(created.id, created);
      const guest = adoptGuestId ? accounts.get(adoptGuestId) : undefined;
      if (guest && guest.adoptedBy === "") accounts.set(guest.id, { ...guest, adoptedBy: created.id });
      return { account: created, balance };
    },
    authenticate: async () => ({ account: account({ id: "5a1d9b7e-3c1f-4d2a-9e8b-7f6a5b4c3d2e", email: "a@example.com" }) }),
  };
  const generationsImpl: Partial<AsyncService<generations.GenerationsServiceServer>> = {
    createGeneration: async ({ userId }) => ({ generation: generation(userId) }),
    listGenerations: async () => ({ generations: [], totalSize: 0 }),
    adoptGuestGenerations: async () => ({ moved: 1 }),
  };
  const usageImpl: Partial<AsyncService<usage.UsageServiceServer>> = {
    getUserStats: async ({ userId }) => ({ stats: { userId, totalGenerations: 0n, totalFailed: 0n, totalCostMicros: 0n, totalCreditsSpent: 0n, lastActivityAt: undefined } }),
    listLimits: async ({ subject }) => ({
      plan: subject?.plan ?? "",
      periodStart: ANCHOR,
      periodEnd: new Date("2026-12-01T00:00:00.000Z"),
      limits: [{ name: "generations_per_period", window: "period", limit: 100n, used: 7n, reserved: 1n, remaining: 92n, withinLimit: true, resetsAt: new Date("2026-12-01T00:00:00.000Z") }],
    }),
    adoptGuest: async () => ({ generationsMoved: 1n }),
  };

  const logger = createLogger("fake-services", "silent");
  const server = new grpc.Server();
  const bind = <S extends grpc.UntypedServiceImplementation>(name: string, impl: object) => bindService<S>(name, recorded(impl) as AsyncService<S>, logger);
  server.addService(credits.CreditsServiceService, bind<credits.CreditsServiceServer>("credits", creditsImpl));
  server.addService(generations.GenerationsServiceService, bind<generations.GenerationsServiceServer>("generations", generationsImpl));
  server.addService(usage.UsageServiceService, bind<usage.UsageServiceServer>("usage", usageImpl));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    address: `127.0.0.1:${port}`,
    accounts,
    calls,
    failWith: (method, error) => (error ? failures.set(method, error) : failures.delete(method)),
    addAccount(fields) {
      const value = account(fields);
      accounts.set(value.id, value);
      return value;
    },
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

/**
 * The order of CreateGeneration's steps and what each failure gives back, with fake ports (no
 * database, no network): account → reservation → hold → insert; a limit refusal holds nothing;
 * a refused hold releases the reservation; an unstored job releases the hold and the reservation.
 */
import { createLogger, DomainError, loadPlanCatalog, type IdempotencyStore } from "@tally/platform";
import type { AccountView, CreditsPort, EventEncoder, GenerationsStores, GenerationsUnitOfWork, HoldView, UsagePort } from "../domain/ports";
import type { GenerationRecord, NewGeneration } from "../domain/types";
import { GenerationsService } from "./generations";
import type { HoldSettlement } from "./settlement";

const userId = "0b7c3a52-1f5e-4c1e-9a51-6f0f6f0c2a11";
const account: AccountView = { id: userId, kind: "user", plan: "free", periodAnchor: new Date("2026-01-31T00:00:00Z") };
const hold: HoldView = { id: "hold-1", amount: 1n, trialAmount: 1n, tokenAmount: 0n, capturedAmount: 0n, expiresAt: new Date("2026-01-31T01:00:00Z") };

/** Records every remote call in order; `failures` makes a named call reject. */
function fakes(failures: { reserve?: Error; hold?: Error; insert?: Error } = {}) {
  const calls: string[] = [];
  const credits: CreditsPort = {
    getAccount: async () => (calls.push("getAccount"), account),
    createHold: async () => {
      calls.push("createHold");
      if (failures.hold) throw failures.hold;
      return hold;
    },
    captureHold: async () => hold,
    releaseHold: async (request) => (calls.push(`releaseHold:${request.reason}`), hold),
    extendHold: async () => hold,
  };
  const usage: UsagePort = {
    checkAndReserve: async (subject, generationId, amount) => {
      calls.push(`checkAndReserve:${subject.kind}:${subject.plan}:${amount}`);
      if (failures.reserve) throw failures.reserve;
      return { generationId, status: "active", credits: amount };
    },
    releaseReservation: async (_generationId, reason) => (calls.push(`releaseReservation:${reason}`), null),
  };
  const idempotency: IdempotencyStore = { claim: async () => ({ claimed: true }), saveResponse: async () => undefined } as unknown as IdempotencyStore;
  const stores = {
    generations: {
      find: async () => null,
      insert: async (generation: NewGeneration) => {
        calls.push("insert");
        if (failures.insert) throw failures.insert;
        return { ...generation, status: "pending", progressPercent: 0, createdAt: new Date() } as unknown as GenerationRecord;
      },
    },
    outbox: {},
    idempotency,
  } as unknown as GenerationsStores;
  const uow: GenerationsUnitOfWork = { inTransaction: (work) => work(stores), withoutTransaction: (work) => work(stores) };
  const options = {
    pricing: { text: 1n, photo: 2n, address: 2n },
    inputLimits: { promptLengthMax: 100, photoUrlLengthMax: 100, addressLengthMax: 100, styleLengthMax: 100 },
    holdTtlMs: 0,
    leaseMs: 1_000,
    plans: loadPlanCatalog(undefined),
  };
  const service = new GenerationsService(uow, { credits, usage }, {} as HoldSettlement, options, createLogger("test", "silent"), {} as EventEncoder);
  const create = () => service.create({ requestId: "r-1", userId, inputType: "text", prompt: "a cat", photoUrl: "", address: "", style: "" });
  return { calls, create };
}

describe("CreateGeneration's steps", () => {
  it("reads the account, reserves quota, holds, then stores", async () => {
    const { calls, create } = fakes();
    await create().catch(() => undefined);
    expect(calls.slice(0, 4)).toEqual(["getAccount", "checkAndReserve:user:free:1", "createHold", "insert"]);
  });

  it("passes a limit refusal through unchanged and holds nothing", async () => {
    const refusal = new DomainError("plan_limit_exceeded", "generations_per_period reached", { limit_name: "generations_per_period", plan: "free", used: 100, limit: 100 });
    const { calls, create } = fakes({ reserve: refusal });
    await expect(create()).rejects.toBe(refusal);
    expect(calls).toEqual(["getAccount", "checkAndReserve:user:free:1"]);
  });

  it("releases the reservation when the hold is refused, and answers the refusal", async () => {
    const refusal = new DomainError("insufficient_credits", "not enough credits");
    const { calls, create } = fakes({ hold: refusal });
    await expect(create()).rejects.toBe(refusal);
    expect(calls).toEqual(["getAccount", "checkAndReserve:user:free:1", "createHold", "releaseReservation:hold_not_taken"]);
  });

  it("releases the hold and the reservation when the job cannot be stored", async () => {
    const failure = new Error("database refused the insert");
    const { calls, create } = fakes({ insert: failure });
    await expect(create()).rejects.toBe(failure);
    expect(calls).toEqual([
      "getAccount",
      "checkAndReserve:user:free:1",
      "createHold",
      "insert",
      "releaseHold:generation_not_stored",
      "releaseReservation:generation_not_stored",
    ]);
  });

  it("keeps both when the store answers with a DomainError (the job belongs to a first request)", async () => {
    const reused = new DomainError("idempotency_key_reused", "other parameters");
    const { calls, create } = fakes({ insert: reused });
    await expect(create()).rejects.toBe(reused);
    expect(calls).toEqual(["getAccount", "checkAndReserve:user:free:1", "createHold", "insert"]);
  });
});

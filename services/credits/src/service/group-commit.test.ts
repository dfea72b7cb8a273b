import type { HoldOperation, HoldOutcome } from "../domain/ports";
import { HoldGroupCommit } from "./group-commit";

/** A release naming `holdId` (the batcher never looks inside an operation). */
const op = (holdId: string): HoldOperation => ({ operation: "ReleaseHold", requestId: holdId, fingerprint: "f", holdId, reason: "r" });
const outcomeOf = (operation: HoldOperation): HoldOutcome => ({ outcome: "insufficient_credits", requested: 1n, available: BigInt(operation.requestId.length) });

describe("HoldGroupCommit", () => {
  it("groups operations arriving while a batch is in flight, each answered with its own outcome", async () => {
    const batches: string[][] = [];
    const commit = new HoldGroupCommit(async (operations) => {
      batches.push(operations.map((o) => o.requestId));
      await new Promise((resolve) => setTimeout(resolve, 20));
      return operations.map(outcomeOf);
    }, { windowMs: 50, maxOperations: 3 });
    const answers = await Promise.all(["a", "bb", "ccc", "dddd", "eeeee"].map((id) => commit.submit(op(id))));
    expect(answers.map((a) => (a.outcome === "insufficient_credits" ? a.available : -1n))).toEqual([1n, 2n, 3n, 4n, 5n]);
    // The first goes at once (nothing in flight); the rest wait and go together, at most 3 a batch.
    expect(batches).toEqual([["a"], ["bb", "ccc", "dddd"], ["eeeee"]]);
  });

  it("retries each member alone when the batch fails, so one bad member fails alone", async () => {
    const calls: string[][] = [];
    let deadlocks = 1;
    const commit = new HoldGroupCommit(async (operations) => {
      calls.push(operations.map((o) => o.requestId));
      if (operations.some((o) => o.requestId === "bad")) throw new Error("unexpected error of one member");
      if (operations.length === 1 && operations[0]!.requestId === "slow" && deadlocks-- > 0) throw Object.assign(new Error("deadlock"), { code: "40P01" });
      return operations.map(outcomeOf);
    }, { windowMs: 50, maxOperations: 10 });
    const first = commit.submit(op("first"));
    const settled = await Promise.allSettled([first, ...["ok", "bad", "slow"].map((id) => commit.submit(op(id)))]);
    expect(settled.map((s) => s.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled"]);
    // The batch of three failed as a whole; each member then ran alone ("slow" twice: a deadlock is retried).
    expect(calls).toEqual([["first"], ["ok", "bad", "slow"], ["ok"], ["bad"], ["slow"], ["slow"]]);
  });

  it("applies each operation at once when the window is 0", async () => {
    const batches: number[] = [];
    const commit = new HoldGroupCommit(async (operations) => (batches.push(operations.length), operations.map(outcomeOf)), { windowMs: 0, maxOperations: 64 });
    await Promise.all(["a", "b", "c"].map((id) => commit.submit(op(id))));
    expect(batches).toEqual([1, 1, 1]);
  });
});

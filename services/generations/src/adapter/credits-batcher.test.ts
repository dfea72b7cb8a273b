/**
 * The batcher's queueing rules on their own (the calls to the real credits service are in
 * test/credits-batcher.test.ts): who goes at once, who queues, and that one member's deadline
 * never holds the others.
 */
import { DomainError } from "@tally/platform";
import type { credits } from "@tally/contracts";
import { CreditsCallBatcher, type CreditsCallSenders } from "./credits-batcher";

const hold = (id: string): credits.Hold => ({ id }) as credits.Hold;

/** Senders whose calls are answered by hand; each call is recorded. */
function manualSenders() {
  const calls: { requests: string[]; answer(results: credits.HoldResult[] | Error): void }[] = [];
  const senders: CreditsCallSenders<string> = {
    one: (request) =>
      new Promise((resolve, reject) =>
        calls.push({ requests: [request], answer: (r) => (r instanceof Error ? reject(r) : resolve(r[0]!.ok!.hold)) }),
      ),
    many: (requests) => new Promise((resolve, reject) => calls.push({ requests, answer: (r) => (r instanceof Error ? reject(r) : resolve(r)) })),
  };
  return { senders, calls };
}
const ok = (id: string): credits.HoldResult => ({ ok: { hold: hold(id), balance: undefined }, error: undefined });

describe("CreditsCallBatcher", () => {
  it("sends a lone call at once and the calls made meanwhile as one batch when it returns", async () => {
    const { senders, calls } = manualSenders();
    const batcher = new CreditsCallBatcher(senders, { maxOperations: 64, windowMs: 0, timeoutMs: 5_000 });
    const first = batcher.submit("a");
    expect(calls.map((c) => c.requests)).toEqual([["a"]]); // at once, in the same tick: no timer
    const rest = ["b", "c", "d"].map((r) => batcher.submit(r));
    expect(calls).toHaveLength(1);
    calls[0]!.answer([ok("a")]);
    await expect(first).resolves.toEqual(hold("a"));
    expect(calls.map((c) => c.requests)).toEqual([["a"], ["b", "c", "d"]]);
    calls[1]!.answer([ok("b"), { ok: undefined, error: { reason: "insufficient_credits", message: "short", detailsJson: '{"requested":"5"}' } }, ok("d")]);
    const settled = await Promise.allSettled(rest);
    expect(settled.map((s) => (s.status === "fulfilled" ? s.value?.id : (s.reason as DomainError).reason))).toEqual(["b", "insufficient_credits", "d"]);
    expect((settled[1] as PromiseRejectedResult).reason).toMatchObject({ message: "short", details: { requested: "5" } });
    expect(batcher.counts).toEqual({ operations: 4, unaryCalls: 1, batchCalls: 1, batchMembers: 3 });
  });

  it("rejects each member of a failed batch call with its error", async () => {
    const { senders, calls } = manualSenders();
    const batcher = new CreditsCallBatcher(senders, { maxOperations: 64, windowMs: 0, timeoutMs: 5_000 });
    void batcher.submit("a").catch(() => undefined);
    const rest = ["b", "c"].map((r) => batcher.submit(r));
    calls[0]!.answer(new DomainError("unavailable", "down"));
    await new Promise((resolve) => setImmediate(resolve));
    calls[1]!.answer(new DomainError("unavailable", "down"));
    const settled = await Promise.allSettled(rest);
    expect(settled.map((s) => (s.status === "rejected" ? (s.reason as DomainError).reason : "answered"))).toEqual(["unavailable", "unavailable"]);
  });

  it("sends a full batch at once, without waiting for the call in flight", () => {
    const { senders, calls } = manualSenders();
    const batcher = new CreditsCallBatcher(senders, { maxOperations: 2, windowMs: 0, timeoutMs: 5_000 });
    ["a", "b", "c", "d"].forEach((r) => void batcher.submit(r).catch(() => undefined));
    expect(calls.map((c) => c.requests)).toEqual([["a"], ["b", "c"]]);
  });

  it("rejects a queued caller at its own deadline while the call ahead of it hangs, and the others go on", async () => {
    const { senders, calls } = manualSenders();
    const batcher = new CreditsCallBatcher(senders, { maxOperations: 64, windowMs: 0, timeoutMs: 100 });
    void batcher.submit("hung").catch(() => undefined);
    const started = Date.now();
    const queued = batcher.submit("queued");
    await expect(queued).rejects.toMatchObject({ reason: "deadline_exceeded" });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(calls).toHaveLength(1); // it left the queue: nothing was sent for it
    // A member whose deadline passes inside a batch call is answered alone; the others get theirs.
    const late = new CreditsCallBatcher(senders, { maxOperations: 64, windowMs: 0, timeoutMs: 100 });
    void late.submit("x").catch(() => undefined);
    const early = late.submit("y");
    await new Promise((resolve) => setTimeout(resolve, 60));
    const fresh = late.submit("z");
    calls[1]!.answer([ok("x")]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls[2]!.requests).toEqual(["y", "z"]);
    await expect(early).rejects.toMatchObject({ reason: "deadline_exceeded" });
    calls[2]!.answer([ok("y"), ok("z")]);
    await expect(fresh).resolves.toEqual(hold("z"));
  }, 5_000);
});

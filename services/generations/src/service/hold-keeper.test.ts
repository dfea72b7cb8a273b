import { createLogger, DomainError } from "@tally/platform";
import type { HoldView } from "../domain/ports";
import { HoldKeeper, type KeptHold } from "./hold-keeper";

const logger = createLogger("hold-keeper-test", "silent");
const view = (expiresAt: Date): HoldView => ({ id: "hold-1", amount: 1n, trialAmount: 1n, tokenAmount: 0n, capturedAmount: 0n, expiresAt });

/** A stand-in for credits' ExtendHold that records the calls and answers as told. */
function creditsAnswering(answer: (call: number) => Promise<HoldView>) {
  const calls: { holdId: string; ttlMs: number }[] = [];
  return { calls, extendHold: (request: { requestId: string; holdId: string; ttlMs: number }) => (calls.push({ holdId: request.holdId, ttlMs: request.ttlMs }), answer(calls.length)) };
}

describe("HoldKeeper (the worker's hold heartbeat)", () => {
  const options = { holdTtlMs: 3_000, extendWithinMs: 1_200 };

  it("extends a hold whose deadline is unknown or near, and records the new deadline; leaves one far off alone", async () => {
    const credits = creditsAnswering(async () => view(new Date(13_000)));
    const keeper = new HoldKeeper(credits, options, logger);
    const hold: KeptHold = { holdId: "hold-1", deadlineMs: null };
    await keeper.heartbeat(hold, "gen-1", 10_000);
    expect(hold.deadlineMs).toBe(13_000);
    await keeper.heartbeat(hold, "gen-1", 11_000); // 2 s left: more than 1.2 s
    await keeper.heartbeat(hold, "gen-1", 12_000); // 1 s left: extend
    expect(credits.calls).toEqual([{ holdId: "hold-1", ttlMs: 3_000 }, { holdId: "hold-1", ttlMs: 3_000 }]);
  });

  it("never calls for a free retry (no hold)", async () => {
    const credits = creditsAnswering(async () => view(new Date(0)));
    await new HoldKeeper(credits, options, logger).heartbeat({ holdId: "", deadlineMs: null }, "gen-2", 0);
    expect(credits.calls).toEqual([]);
  });

  it("stops extending a hold that has ended, and retries one whose extension failed otherwise", async () => {
    const ended = creditsAnswering(async () => Promise.reject(new DomainError("hold_not_active", "the hold is already expired")));
    const endedHold: KeptHold = { holdId: "hold-1", deadlineMs: null };
    const keeper = new HoldKeeper(ended, options, logger);
    await keeper.heartbeat(endedHold, "gen-3", 0);
    await keeper.heartbeat(endedHold, "gen-3", 100);
    expect(ended.calls).toHaveLength(1);
    expect(endedHold.holdId).toBe("");

    const flaky = creditsAnswering(async (call) => (call === 1 ? Promise.reject(new DomainError("unavailable", "credits is down")) : view(new Date(5_000))));
    const flakyHold: KeptHold = { holdId: "hold-2", deadlineMs: null };
    const retrying = new HoldKeeper(flaky, options, logger);
    await retrying.heartbeat(flakyHold, "gen-4", 0);
    await retrying.heartbeat(flakyHold, "gen-4", 100);
    expect(flaky.calls).toHaveLength(2);
    expect(flakyHold).toEqual({ holdId: "hold-2", deadlineMs: 5_000 });
  });
});

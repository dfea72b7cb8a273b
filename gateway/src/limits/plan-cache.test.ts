import { PlanCache } from "./plan-cache";

describe("PlanCache", () => {
  it("reuses a plan for ttlMs, shares concurrent lookups and forgets failures", async () => {
    let now = 0;
    const cache = new PlanCache(1000, 10, () => now);
    let loads = 0;
    const load = async () => `plan-${++loads}`;
    const [a, b] = await Promise.all([cache.planOf("x", load), cache.planOf("x", load)]);
    expect([a, b, loads]).toEqual(["plan-1", "plan-1", 1]);
    now = 999;
    expect(await cache.planOf("x", load)).toBe("plan-1");
    now = 1000;
    expect(await cache.planOf("x", load)).toBe("plan-2");

    await expect(cache.planOf("y", () => Promise.reject(new Error("down")))).rejects.toThrow("down");
    expect(await cache.planOf("y", load)).toBe("plan-3");
    cache.remember("x", "pro");
    expect(await cache.planOf("x", load)).toBe("pro");
  });

  it("keeps at most entriesMax accounts, and nothing with a ttl of 0", async () => {
    const cache = new PlanCache(1000, 2, () => 0);
    for (const id of ["a", "b", "c"]) cache.remember(id, `plan-${id}`);
    expect(await cache.planOf("a", async () => "reloaded")).toBe("reloaded");
    expect(await cache.planOf("c", async () => "reloaded")).toBe("plan-c");
    const none = new PlanCache(0);
    none.remember("a", "pro");
    expect(await none.planOf("a", async () => "free")).toBe("free");
  });
});

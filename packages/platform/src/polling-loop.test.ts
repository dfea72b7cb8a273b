import pino from "pino";
import { PollingLoop } from "./polling-loop";
import type { Logger } from "./logger";

const silent = pino({ level: "silent" }) as unknown as Logger;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("PollingLoop", () => {
  it("goes again at once while work is waiting, but pauses after passesInARowMax passes", async () => {
    const times: number[] = [];
    const loop = new PollingLoop({ name: "test", intervalMs: 200, backoffMaxMs: 200, passesInARowMax: 3 }, async () => {
      times.push(Date.now());
      return true;
    }, silent);
    loop.start();
    await sleep(100);
    await loop.stop();
    // Three passes back to back, then the 200 ms pause that the stop cut short.
    expect(times).toHaveLength(3);
  });

  it("pauses intervalMs when idle and wakes up early on demand", async () => {
    let passes = 0;
    const loop = new PollingLoop({ name: "test", intervalMs: 10_000, backoffMaxMs: 10_000, passesInARowMax: 1 }, async () => {
      passes++;
      return false;
    }, silent);
    loop.start();
    await sleep(20);
    expect(passes).toBe(1);
    loop.wakeUp();
    await sleep(20);
    expect(passes).toBe(2);
    const stopped = Date.now();
    await loop.stop();
    expect(Date.now() - stopped).toBeLessThan(1_000);
    expect(loop.running).toBe(false);
  });

  it("runs again at once when woken during a pass (the work may have come after the pass looked)", async () => {
    let passes = 0;
    let release: (() => void) | undefined;
    const loop = new PollingLoop({ name: "test", intervalMs: 10_000, backoffMaxMs: 10_000, passesInARowMax: 1 }, async () => {
      passes++;
      if (passes === 2) await new Promise<void>((resolve) => (release = resolve));
      return false;
    }, silent);
    loop.start();
    await sleep(20);
    loop.wakeUp();
    await sleep(20);
    expect(passes).toBe(2);
    // Woken while pass 2 is still running: pass 3 follows it without the 10 s pause.
    loop.wakeUp();
    release?.();
    await sleep(50);
    expect(passes).toBe(3);
    await loop.stop();
  });

  it("backs off exponentially while passes fail, logging each failure, and recovers", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "error" }, { write: (line: string) => void lines.push(line) }) as unknown as Logger;
    let calls = 0;
    const loop = new PollingLoop({ name: "flaky pass", intervalMs: 10, backoffMaxMs: 40, passesInARowMax: 1 }, async () => {
      calls++;
      if (calls <= 4) throw new Error("boom");
      return false;
    }, logger);
    loop.start();
    await sleep(300);
    await loop.stop();
    expect(calls).toBeGreaterThanOrEqual(5);
    const delays = lines.slice(0, 4).map((line) => (JSON.parse(line) as { retry_in_ms: number }).retry_in_ms);
    expect(delays).toEqual([10, 20, 40, 40]);
    expect(lines[0]).toContain("flaky pass failed; retrying");
  });

  it("stop waits for the pass in progress and never interrupts it", async () => {
    let finished = false;
    const loop = new PollingLoop({ name: "test", intervalMs: 10, backoffMaxMs: 10, passesInARowMax: 1 }, async () => {
      await sleep(100);
      finished = true;
      return false;
    }, silent);
    loop.start();
    await sleep(10);
    await loop.stop();
    expect(finished).toBe(true);
  });

  it("refuses options without a bound", () => {
    expect(() => new PollingLoop({ name: "x", intervalMs: 10, backoffMaxMs: 5, passesInARowMax: 1 }, async () => false, silent)).toThrow(RangeError);
    expect(() => new PollingLoop({ name: "x", intervalMs: 10, backoffMaxMs: 10, passesInARowMax: 0 }, async () => false, silent)).toThrow(RangeError);
  });
});

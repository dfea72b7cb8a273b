import { PNG } from "pngjs";
import type { GenerationJob } from "../domain/types";
import { FaultInjectionProvider, PROVIDER_ERROR_FAULT_MARKER } from "./fault-injection-provider";
import { LocalFractalRenderer } from "./local-fractal-renderer";
import type { GenerationProvider } from "./provider";

const job = (prompt: string): GenerationJob => ({
  id: "00000000-0000-4000-8000-000000000001",
  userId: "00000000-0000-4000-8000-000000000002",
  inputType: "text",
  prompt,
  photoUrl: "",
  address: "",
  style: "",
});
const renderer = new LocalFractalRenderer({ imageSizePx: 64, iterationsMax: 64, rowsPerChunk: 8, costMicrosPerCpuSecond: 1_000_000_000, renderThreads: 2 });
const run = (provider: GenerationProvider = renderer, prompt = "a lighthouse", progress: number[] = [], signal = new AbortController().signal) =>
  provider.generate(job(prompt), { reportProgress: (p) => progress.push(p), reportCost: () => undefined, signal });

afterAll(() => renderer.close());

describe("LocalFractalRenderer", () => {
  it("renders a PNG of the configured size that pngjs decodes", async () => {
    const output = await run();
    expect(output.contentType).toBe("image/png");
    const png = PNG.sync.read(Buffer.from(output.content));
    expect([png.width, png.height]).toEqual([64, 64]);
    expect(typeof output.costMicros).toBe("bigint");
    expect(output.costMicros).toBeGreaterThan(0n);
  });

  it("is deterministic in its input and differs between inputs", async () => {
    const [a, b, c] = await Promise.all([run(renderer, "a lighthouse"), run(renderer, "a lighthouse"), run(renderer, "a forest")]);
    expect(Buffer.from(a.content).equals(Buffer.from(b.content))).toBe(true);
    expect(Buffer.from(a.content).equals(Buffer.from(c.content))).toBe(false);
  });

  it("reports rising progress per chunk up to 100", async () => {
    const progress: number[] = [];
    await run(renderer, "progress", progress);
    expect(progress).toEqual([12, 25, 37, 50, 62, 75, 87, 100]);
  });

  it("stops when its signal is aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(run(renderer, "x", [], controller.signal)).rejects.toMatchObject({ code: "provider_aborted" });
  });

  it("stops a render mid-run at its next chunk when aborted, and reports a spend meanwhile", async () => {
    const slow = new LocalFractalRenderer({ imageSizePx: 256, iterationsMax: 5_000, rowsPerChunk: 4, costMicrosPerCpuSecond: 1_000_000_000, renderThreads: 1 });
    try {
      const controller = new AbortController();
      const progress: number[] = [];
      const spent: bigint[] = [];
      const rendering = slow.generate(job("abort me"), {
        reportProgress: (percent) => {
          progress.push(percent);
          if (progress.length === 2) controller.abort();
        },
        reportCost: (micros) => spent.push(micros),
        signal: controller.signal,
      });
      await expect(rendering).rejects.toMatchObject({ code: "provider_aborted" });
      expect(progress.length).toBeGreaterThanOrEqual(2);
      expect(Math.max(...progress)).toBeLessThan(100);
      expect(spent.at(-1)).toBeGreaterThan(0n);
      // The pool's thread is free again: the next render completes.
      await expect(slow.generate(job("after"), { reportProgress: () => undefined, reportCost: () => undefined, signal: new AbortController().signal })).resolves.toMatchObject({
        contentType: "image/png",
      });
    } finally {
      await slow.close();
    }
  });

  it("renders off the event loop: timers keep firing while one long chunk renders", async () => {
    // One chunk of the whole image: rendered on the event loop, no timer could fire until it ends.
    const heavy = new LocalFractalRenderer({ imageSizePx: 1024, iterationsMax: 3_000, rowsPerChunk: 1024, costMicrosPerCpuSecond: 1, renderThreads: 1 });
    try {
      await heavy.generate(job("warm-up"), { reportProgress: () => undefined, reportCost: () => undefined, signal: new AbortController().signal });
      let last = performance.now();
      let gapMaxMs = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        gapMaxMs = Math.max(gapMaxMs, now - last);
        last = now;
      }, 5);
      const startedAt = performance.now();
      await heavy.generate(job("a heavy render"), { reportProgress: () => undefined, reportCost: () => undefined, signal: new AbortController().signal });
      const renderMs = performance.now() - startedAt;
      clearInterval(timer);
      // Generous against a busy machine: the render takes far longer than the largest pause.
      expect(renderMs).toBeGreaterThan(100);
      expect(gapMaxMs).toBeLessThan(renderMs / 2);
    } finally {
      await heavy.close();
    }
  });

  it("a render aborted while it waits for a thread never starts", async () => {
    const single = new LocalFractalRenderer({ imageSizePx: 256, iterationsMax: 2_000, rowsPerChunk: 32, costMicrosPerCpuSecond: 1, renderThreads: 1 });
    try {
      const signal = new AbortController().signal;
      const first = single.generate(job("first"), { reportProgress: () => undefined, reportCost: () => undefined, signal });
      const controller = new AbortController();
      const progress: number[] = [];
      const queued = single.generate(job("queued"), { reportProgress: (p) => progress.push(p), reportCost: () => undefined, signal: controller.signal });
      controller.abort();
      await expect(queued).rejects.toMatchObject({ code: "provider_aborted" });
      await expect(first).resolves.toMatchObject({ contentType: "image/png" });
      expect(progress).toEqual([]);
    } finally {
      await single.close();
    }
  });
});

describe("FaultInjectionProvider", () => {
  const faulty = new FaultInjectionProvider(renderer);
  it("fails marked jobs with provider_error and passes others through", async () => {
    await expect(run(faulty, `boom ${PROVIDER_ERROR_FAULT_MARKER}`)).rejects.toMatchObject({ code: "provider_error" });
    await expect(run(faulty, "fine")).resolves.toMatchObject({ contentType: "image/png" });
    expect(faulty.name).toBe("local-fractal");
  });
});

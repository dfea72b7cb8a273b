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
const renderer = new LocalFractalRenderer({ imageSizePx: 64, iterationsMax: 64, rowsPerChunk: 8, costMicrosPerCpuSecond: 1_000_000_000 });
const run = (provider: GenerationProvider = renderer, prompt = "a lighthouse", progress: number[] = [], signal = new AbortController().signal) =>
  provider.generate(job(prompt), { reportProgress: (p) => progress.push(p), reportCost: () => undefined, signal });

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
});

describe("FaultInjectionProvider", () => {
  const faulty = new FaultInjectionProvider(renderer);
  it("fails marked jobs with provider_error and passes others through", async () => {
    await expect(run(faulty, `boom ${PROVIDER_ERROR_FAULT_MARKER}`)).rejects.toMatchObject({ code: "provider_error" });
    await expect(run(faulty, "fine")).resolves.toMatchObject({ contentType: "image/png" });
    expect(faulty.name).toBe("local-fractal");
  });
});

import path from "node:path";
import { MessageChannel } from "node:worker_threads";
import { Piscina } from "piscina";
import type { GenerationJob } from "../domain/types";
import { fractalParameters } from "./fractal-image";
import { ProviderError, type GenerationProvider, type ProviderOutput, type ProviderRunContext } from "./provider";
import { CONTROL_ABORTED, RENDER_ABORTED_MESSAGE, type RenderDone, type RenderProgress, type RenderTaskInput } from "./render-task";

export { fractalParameters } from "./fractal-image";

/** The worker threads' entry (it loads render-task.ts through tsx). */
const RENDER_WORKER_FILE = path.join(__dirname, "render-worker.cjs");

export interface LocalFractalRendererOptions {
  /** Width and height of the image, in pixels. */
  imageSizePx: number;
  /** Escape-time iterations per pixel (detail and CPU cost). */
  iterationsMax: number;
  /** Rows rendered between progress reports and abort checks. */
  rowsPerChunk: number;
  /** Price of one CPU second, in micro-units of the currency. */
  costMicrosPerCpuSecond: number;
  /** Worker threads that render (GENERATION_RENDER_THREADS, at least 1); renders beyond them wait in the pool's queue. */
  renderThreads: number;
}

/**
 * The built-in provider: renders a Julia-set fractal as a PNG, locally, whose shape and
 * colours come from a SHA-256 of the job's input (prompt, style, photo_url, address), so the
 * same input always gives the same image. Rendering and PNG encoding run in a pool of
 * `renderThreads` worker threads (piscina), never on the service's event loop, so gRPC calls
 * and the other jobs' bookkeeping stay quick while images render. Each chunk of rows reports
 * progress (0..100) and the spend so far; an abort (cancel, timeout, shutdown) stops the render
 * at its next chunk, or before it starts when it still waits for a thread. Its cost is
 * measured: CPU time of the rendering thread × the configured price of a CPU second, as an
 * integer number of micros. `close()` ends the pool (graceful shutdown).
 */
export class LocalFractalRenderer implements GenerationProvider {
  readonly name = "local-fractal";
  private pool: Piscina | undefined;

  constructor(private readonly options: LocalFractalRendererOptions) {
    if (!Number.isInteger(options.renderThreads) || options.renderThreads < 1) throw new RangeError("renderThreads must be an integer of at least 1");
  }

  async generate(job: GenerationJob, context: ProviderRunContext): Promise<ProviderOutput> {
    if (context.signal.aborted) throw abortedError();
    const control = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
    const onAbort = () => Atomics.store(control, CONTROL_ABORTED, 1);
    context.signal.addEventListener("abort", onAbort, { once: true });
    const channel = new MessageChannel();
    const size = this.options.imageSizePx;
    const finished = new Promise<number>((resolve) => {
      channel.port1.on("message", (message: RenderProgress | RenderDone) => {
        if ("done" in message) return resolve(message.cpuMicros);
        context.reportProgress(Math.floor((message.rowsDone * 100) / size));
        context.reportCost(this.costOf(message.cpuMicros));
      });
    });
    const input: RenderTaskInput = {
      parameters: fractalParameters(job),
      imageSizePx: size,
      iterationsMax: this.options.iterationsMax,
      rowsPerChunk: this.options.rowsPerChunk,
      control,
      progress: channel.port2,
    };
    try {
      const png = (await this.renderPool().run(input, { transferList: [channel.port2] })) as ArrayBuffer;
      // The task posts its last progress and CPU time before it answers: all of it has come (or is queued) by now.
      const cpuMicros = await finished;
      return { content: new Uint8Array(png), contentType: "image/png", costMicros: this.costOf(cpuMicros) };
    } catch (error) {
      if (context.signal.aborted || (error instanceof Error && error.message === RENDER_ABORTED_MESSAGE)) throw abortedError();
      throw new ProviderError("provider_error", `rendering failed: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      context.signal.removeEventListener("abort", onAbort);
      channel.port1.close();
    }
  }

  /** Ends the worker threads (renders still running are cut off); a later generate starts a new pool. */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.destroy();
  }

  /** The pool, started at the first render: `renderThreads` threads kept warm, started without the parent's loader flags. */
  private renderPool(): Piscina {
    const threads = this.options.renderThreads;
    this.pool ??= new Piscina({ filename: RENDER_WORKER_FILE, minThreads: threads, maxThreads: threads, execArgv: [] });
    return this.pool;
  }

  /** The cost of `cpuMicros` of CPU time, in micros of money (integer arithmetic: CPU µs × price per CPU second / 1e6). */
  private costOf(cpuMicros: number): bigint {
    return (BigInt(Math.max(0, Math.round(cpuMicros))) * BigInt(this.options.costMicrosPerCpuSecond)) / 1_000_000n;
  }
}

const abortedError = () => new ProviderError("provider_aborted", "rendering was aborted");

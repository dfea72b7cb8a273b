import { readFileSync } from "node:fs";
import type { MessagePort } from "node:worker_threads";
import { Piscina } from "piscina";
import { renderFractalPng, type FractalRenderSpec } from "./fractal-image";

/*
 * The task a render-pool worker thread runs (loaded through render-worker.cjs): renders and
 * encodes one fractal image off the service's event loop. It never sees the job, the
 * database or the network: parameters in, PNG bytes out.
 */

/** Index in `RenderTaskInput.control` (an Int32Array on a SharedArrayBuffer) of the abort flag: non-zero = stop. */
export const CONTROL_ABORTED = 0;

/** One render, as sent to a worker thread. */
export interface RenderTaskInput extends FractalRenderSpec {
  /** Shared with the main thread, which sets `[CONTROL_ABORTED]` to 1 to stop the render at its next chunk. */
  control: Int32Array;
  /** Receives a `RenderProgress` after each chunk, then `{ done: true }` just before the result. */
  progress: MessagePort;
}

/** Sent on `RenderTaskInput.progress` after each chunk. */
export interface RenderProgress {
  rowsDone: number;
  /** CPU time this render has used so far, in microseconds (of its worker thread). */
  cpuMicros: number;
}

/** The last message on `RenderTaskInput.progress`, just before the result: the render's whole CPU time, in microseconds. */
export interface RenderDone {
  done: true;
  cpuMicros: number;
}

/** Thrown (by message) when the render was stopped through its abort flag. */
export const RENDER_ABORTED_MESSAGE = "render aborted";

/**
 * Renders one image in the calling worker thread: checks the abort flag before each chunk
 * (and before starting, for a task that waited in the queue), reports progress and CPU time
 * per chunk and at the end (`RenderDone`), and answers the PNG bytes as an ArrayBuffer moved
 * to the main thread, not copied.
 */
export default function renderTask(input: RenderTaskInput): ArrayBuffer {
  const cpuStartMicros = threadCpuMicros();
  const checkAborted = () => {
    if (Atomics.load(input.control, CONTROL_ABORTED) !== 0) throw new Error(RENDER_ABORTED_MESSAGE);
  };
  checkAborted();
  const png = renderFractalPng(input, (rowsDone) => {
    const progress: RenderProgress = { rowsDone, cpuMicros: threadCpuMicros() - cpuStartMicros };
    input.progress.postMessage(progress);
    checkAborted();
  });
  // The main thread closes the port once it has this message (or the task failed).
  const done: RenderDone = { done: true, cpuMicros: threadCpuMicros() - cpuStartMicros };
  input.progress.postMessage(done);
  // PNG.sync.write's Buffer may share a pooled ArrayBuffer: copy it once into one of its own, which moves.
  const bytes = new Uint8Array(png.byteLength);
  bytes.set(png);
  return Piscina.move(bytes.buffer) as ArrayBuffer;
}

/**
 * CPU time of the calling thread, in microseconds: Linux's /proc/thread-self/schedstat (time
 * on CPU in nanoseconds); elsewhere the process's CPU time (which counts the other threads too).
 */
function threadCpuMicros(): number {
  try {
    const onCpuNs = Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]);
    if (Number.isFinite(onCpuNs)) return Math.floor(onCpuNs / 1000);
  } catch {
    // Not Linux: fall through.
  }
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

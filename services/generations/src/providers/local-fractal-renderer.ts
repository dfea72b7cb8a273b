import { createHash } from "node:crypto";
import { PNG } from "pngjs";
import type { GenerationJob } from "../domain/types";
import { ProviderError, type GenerationProvider, type ProviderOutput, type ProviderRunContext } from "./provider";

export interface LocalFractalRendererOptions {
  /** Width and height of the image, in pixels. */
  imageSizePx: number;
  /** Escape-time iterations per pixel (detail and CPU cost). */
  iterationsMax: number;
  /** Rows rendered between yields to the event loop. */
  rowsPerChunk: number;
  /** Price of one CPU second, in micro-units of the currency. */
  costMicrosPerCpuSecond: number;
}

/** Parameters of one Julia-set image, all derived from the job's input. */
interface FractalParameters {
  cRe: number;
  cIm: number;
  zoom: number;
  hueOffset: number;
  hueScale: number;
}

/**
 * The built-in provider: renders a Julia-set fractal as a PNG, locally, whose shape and
 * colours come from a SHA-256 of the job's input (prompt, style, photo_url, address), so the
 * same input always gives the same image. It renders in chunks of rows and yields to the event
 * loop between them (the gRPC server and other jobs keep running) and reports progress per
 * chunk. Its cost is measured: CPU time used during the render × the configured price of a
 * CPU second, as an integer number of micros.
 */
export class LocalFractalRenderer implements GenerationProvider {
  readonly name = "local-fractal";

  constructor(private readonly options: LocalFractalRendererOptions) {}

  async generate(job: GenerationJob, context: ProviderRunContext): Promise<ProviderOutput> {
    const cpuBefore = process.cpuUsage();
    const size = this.options.imageSizePx;
    const parameters = fractalParameters(job);
    const png = new PNG({ width: size, height: size });
    for (let rowStart = 0; rowStart < size; rowStart += this.options.rowsPerChunk) {
      if (context.signal.aborted) throw new ProviderError("provider_aborted", "rendering was aborted");
      const rowEnd = Math.min(size, rowStart + this.options.rowsPerChunk);
      renderRows(png.data, size, rowStart, rowEnd, parameters, this.options.iterationsMax);
      context.reportProgress(Math.floor((rowEnd * 100) / size));
      context.reportCost(this.costSince(cpuBefore));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const content = PNG.sync.write(png);
    return { content: new Uint8Array(content), contentType: "image/png", costMicros: this.costSince(cpuBefore) };
  }

  /** The measured cost of the CPU time used since `cpuBefore`, in micros of money. */
  private costSince(cpuBefore: NodeJS.CpuUsage): bigint {
    const cpu = process.cpuUsage(cpuBefore);
    // Integer arithmetic: micros of money = CPU µs × price per CPU second / 1e6.
    return (BigInt(cpu.user + cpu.system) * BigInt(this.options.costMicrosPerCpuSecond)) / 1_000_000n;
  }
}

/** Derives the fractal's parameters from a hash of everything the user gave. */
export function fractalParameters(job: Pick<GenerationJob, "inputType" | "prompt" | "style" | "photoUrl" | "address">): FractalParameters {
  const hash = createHash("sha256")
    .update([job.inputType, job.prompt, job.style, job.photoUrl, job.address].join("\u0000"))
    .digest();
  const unit = (offset: number) => hash.readUInt32BE(offset) / 0xffff_ffff;
  // c on a circle of radius ~0.7885 gives connected, detailed Julia sets for most angles.
  const angle = unit(0) * 2 * Math.PI;
  const radius = 0.7 + unit(4) * 0.1;
  return {
    cRe: radius * Math.cos(angle),
    cIm: radius * Math.sin(angle),
    zoom: 0.8 + unit(8) * 0.8,
    hueOffset: unit(12) * 360,
    hueScale: 2 + unit(16) * 8,
  };
}

function renderRows(data: Buffer, size: number, rowStart: number, rowEnd: number, p: FractalParameters, iterationsMax: number): void {
  for (let y = rowStart; y < rowEnd; y++) {
    for (let x = 0; x < size; x++) {
      let zRe = ((x / size) * 3 - 1.5) / p.zoom;
      let zIm = ((y / size) * 3 - 1.5) / p.zoom;
      let iteration = 0;
      while (iteration < iterationsMax && zRe * zRe + zIm * zIm <= 4) {
        const nextRe = zRe * zRe - zIm * zIm + p.cRe;
        zIm = 2 * zRe * zIm + p.cIm;
        zRe = nextRe;
        iteration++;
      }
      const offset = (y * size + x) * 4;
      if (iteration === iterationsMax) {
        data[offset] = 0;
        data[offset + 1] = 0;
        data[offset + 2] = 0;
      } else {
        const [r, g, b] = hslToRgb((p.hueOffset + iteration * p.hueScale) % 360, 0.75, 0.25 + 0.5 * (iteration / iterationsMax));
        data[offset] = r;
        data[offset + 1] = g;
        data[offset + 2] = b;
      }
      data[offset + 3] = 255;
    }
  }
}

function hslToRgb(hue: number, saturation: number, lightness: number): [number, number, number] {
  const chroma = (1 - Math.abs(2 * lightness - 1)) * saturation;
  const h = hue / 60;
  const second = chroma * (1 - Math.abs((h % 2) - 1));
  const [r, g, b] =
    h < 1 ? [chroma, second, 0] : h < 2 ? [second, chroma, 0] : h < 3 ? [0, chroma, second] : h < 4 ? [0, second, chroma] : h < 5 ? [second, 0, chroma] : [chroma, 0, second];
  const m = lightness - chroma / 2;
  return [Math.round((r + m) * 255), Math.round((g + m) * 255), Math.round((b + m) * 255)];
}

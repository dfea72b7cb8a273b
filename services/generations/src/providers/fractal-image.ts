import { createHash } from "node:crypto";
import { PNG } from "pngjs";
import type { GenerationJob } from "../domain/types";

/*
 * The pure part of the built-in provider: the Julia-set parameters a job's input gives, and
 * the rendering and PNG encoding of one image. It runs inside a render-pool worker thread
 * (render-task.ts); nothing here touches the event loop, the database or the network.
 */

/** Parameters of one Julia-set image, all derived from the job's input. */
export interface FractalParameters {
  cRe: number;
  cIm: number;
  zoom: number;
  hueOffset: number;
  hueScale: number;
}

/** What to render: a square image of `imageSizePx`, `iterationsMax` escape-time iterations per pixel, in chunks of `rowsPerChunk` rows. */
export interface FractalRenderSpec {
  parameters: FractalParameters;
  imageSizePx: number;
  iterationsMax: number;
  rowsPerChunk: number;
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

/**
 * Renders `spec` chunk by chunk, calling `afterChunk(rowsDone)` after each chunk (it may throw
 * to stop the render, e.g. when the job was aborted), then encodes the image as a PNG.
 */
export function renderFractalPng(spec: FractalRenderSpec, afterChunk: (rowsDone: number) => void): Buffer {
  const size = spec.imageSizePx;
  const png = new PNG({ width: size, height: size });
  for (let rowStart = 0; rowStart < size; rowStart += spec.rowsPerChunk) {
    const rowEnd = Math.min(size, rowStart + spec.rowsPerChunk);
    renderRows(png.data, size, rowStart, rowEnd, spec.parameters, spec.iterationsMax);
    afterChunk(rowEnd);
  }
  return PNG.sync.write(png);
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

import { execFile } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { defaultServiceName, tracingRequested } from "./otel-sdk";
import { OTEL_REGISTER_MODULE, REPOSITORY_ROOT } from "./process";

describe("tracingRequested", () => {
  it("is true only with an OTLP endpoint set and the SDK not disabled", () => {
    expect(tracingRequested({})).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "" })).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "  " })).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toBe(true);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces" })).toBe(true);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_SDK_DISABLED: "true" })).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_SDK_DISABLED: "TRUE" })).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_SDK_DISABLED: "false" })).toBe(true);
  });
});

describe("defaultServiceName", () => {
  it("is tally- and the entry point's folder", () => {
    expect(defaultServiceName("/app/services/credits/main.ts")).toBe("tally-credits");
    expect(defaultServiceName("/app/gateway/main.ts")).toBe("tally-gateway");
    expect(defaultServiceName(undefined)).toBe("tally");
  });
});

/**
 * What a process preloaded with otel-register.ts sees: is the SDK loaded, do spans record. It
 * ends a span `probe`, then stops the way handleShutdown does (shutdownTracing, from the
 * platform as main.ts loads it), which must flush that span.
 */
async function preloaded(env: Record<string, string>): Promise<{ sdkLoaded: boolean; recording: boolean }> {
  const probe = [
    'const api = require("@opentelemetry/api");',
    'const sdkLoaded = Object.keys(require.cache).some((p) => p.includes("@opentelemetry/sdk-node"));',
    'const span = api.trace.getTracer("probe").startSpan("probe");',
    "console.log(JSON.stringify({ sdkLoaded, recording: span.isRecording() }));",
    "span.end();",
    'require("@tally/platform").shutdownTracing(5000).then(() => process.exit(0));',
  ].join("\n");
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("OTEL_"))) as Record<string, string>;
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "--import", OTEL_REGISTER_MODULE, "-e", probe], {
    cwd: REPOSITORY_ROOT,
    env: { ...clean, ...env },
  });
  return JSON.parse(stdout.trim().split("\n").pop()!) as { sdkLoaded: boolean; recording: boolean };
}

describe("the otel-register preload", () => {
  // Nothing listens on port 9: nothing is exported in these probes.
  const endpoint = "http://127.0.0.1:9";

  it("loads nothing when no OTLP endpoint is set (tracing off costs nothing)", async () => {
    expect(await preloaded({})).toEqual({ sdkLoaded: false, recording: false });
  }, 30_000);

  it("starts the SDK when OTEL_EXPORTER_OTLP_ENDPOINT is set, and flushes at shutdown", async () => {
    const names: string[] = [];
    const receiver = http.createServer((request, response) => {
      let body = "";
      request.on("data", (chunk: Buffer) => (body += chunk.toString()));
      request.on("end", () => {
        if (request.url === "/v1/traces") names.push(...[...body.matchAll(/"name":"([^"]*)"/g)].map((m) => m[1]!));
        response.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
      // A batch delay of a minute: only the shutdown's flush can deliver the span in time.
      const env = { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json", OTEL_BSP_SCHEDULE_DELAY: "60000" };
      expect(await preloaded(env)).toEqual({ sdkLoaded: true, recording: true });
      expect(names).toContain("probe");
    } finally {
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
  }, 30_000);

  it("stays off with OTEL_SDK_DISABLED=true, whatever the endpoint", async () => {
    expect(await preloaded({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SDK_DISABLED: "true" })).toEqual({ sdkLoaded: false, recording: false });
  }, 30_000);
});

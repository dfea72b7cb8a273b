import { execFile } from "node:child_process";
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

/** What a process preloaded with otel-register.ts sees: is the SDK loaded, do spans record, which service name. */
async function preloaded(env: Record<string, string>): Promise<{ sdkLoaded: boolean; recording: boolean }> {
  const probe = [
    'const api = require("@opentelemetry/api");',
    'const sdkLoaded = Object.keys(require.cache).some((p) => p.includes("@opentelemetry/sdk-node"));',
    'const span = api.trace.getTracer("probe").startSpan("probe");',
    "console.log(JSON.stringify({ sdkLoaded, recording: span.isRecording() }));",
    "process.exit(0);",
  ].join("\n");
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("OTEL_"))) as Record<string, string>;
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "--import", OTEL_REGISTER_MODULE, "-e", probe], {
    cwd: REPOSITORY_ROOT,
    env: { ...clean, ...env },
  });
  return JSON.parse(stdout.trim().split("\n").pop()!) as { sdkLoaded: boolean; recording: boolean };
}

describe("the otel-register preload", () => {
  // Nothing listens on port 9: the exporter would only fail, and nothing is exported in these probes anyway.
  const endpoint = "http://127.0.0.1:9";

  it("loads nothing when no OTLP endpoint is set (tracing off costs nothing)", async () => {
    expect(await preloaded({})).toEqual({ sdkLoaded: false, recording: false });
  }, 30_000);

  it("starts the SDK when OTEL_EXPORTER_OTLP_ENDPOINT is set", async () => {
    expect(await preloaded({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint })).toEqual({ sdkLoaded: true, recording: true });
  }, 30_000);

  it("stays off with OTEL_SDK_DISABLED=true, whatever the endpoint", async () => {
    expect(await preloaded({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SDK_DISABLED: "true" })).toEqual({ sdkLoaded: false, recording: false });
  }, 30_000);
});

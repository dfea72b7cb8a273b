import { ConfigError } from "@tally/platform";
import { creditsBatchWindowMs, loadGenerationsConfig } from "./config";

describe("generations config", () => {
  it("takes the defaults (HOLD_TTL_MS 0 = the credits service's default)", () => {
    expect(loadGenerationsConfig({})).toMatchObject({ HOLD_TTL_MS: 0, PROVIDER_TIMEOUT_MS: 120_000, WORKER_LEASE_MS: 60_000 });
  });

  it("refuses a HOLD_TTL_MS that does not exceed 2 × WORKER_LEASE_MS", () => {
    const load = (env: Record<string, string>) => () => loadGenerationsConfig(env);
    expect(load({ HOLD_TTL_MS: "120000" })).toThrow(ConfigError);
    expect(load({ HOLD_TTL_MS: "120000" })).toThrow(/HOLD_TTL_MS: must exceed 2 × WORKER_LEASE_MS \(120000 ms\)/);
    expect(load({ HOLD_TTL_MS: "60000", WORKER_LEASE_MS: "30000" })).toThrow(/HOLD_TTL_MS/);
    expect(loadGenerationsConfig({ HOLD_TTL_MS: "120001" }).HOLD_TTL_MS).toBe(120_001);
    // A hold shorter than a job's run is fine: the worker extends it while the job runs.
    expect(loadGenerationsConfig({ HOLD_TTL_MS: "3000", WORKER_LEASE_MS: "900", PROVIDER_TIMEOUT_MS: "60000" }).HOLD_TTL_MS).toBe(3_000);
  });

  it("batches calls to credits by default, with no extra window; the former CREDITS_SETTLE_COALESCE_WINDOW_MS is still read, capped at 1 ms", () => {
    const defaults = loadGenerationsConfig({});
    expect(defaults.CREDITS_BATCH_MAX_OPERATIONS).toBe(64);
    expect(creditsBatchWindowMs(defaults)).toBe(0);
    expect(creditsBatchWindowMs(loadGenerationsConfig({ CREDITS_SETTLE_COALESCE_WINDOW_MS: "20" }))).toBe(1);
    expect(creditsBatchWindowMs(loadGenerationsConfig({ CREDITS_SETTLE_COALESCE_WINDOW_MS: "20", CREDITS_BATCH_WINDOW_MS: "0" }))).toBe(0);
    expect(() => loadGenerationsConfig({ CREDITS_BATCH_WINDOW_MS: "5" })).toThrow(/CREDITS_BATCH_WINDOW_MS/);
    expect(() => loadGenerationsConfig({ CREDITS_BATCH_MAX_OPERATIONS: "1001" })).toThrow(/CREDITS_BATCH_MAX_OPERATIONS/);
    expect(() => loadGenerationsConfig({ CREDITS_BATCH_MAX_OPERATIONS: "0" })).toThrow(/CREDITS_BATCH_MAX_OPERATIONS/);
  });
});

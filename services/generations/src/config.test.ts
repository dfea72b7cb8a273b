import { ConfigError } from "@tally/platform";
import { loadGenerationsConfig } from "./config";

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
});

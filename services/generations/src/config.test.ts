import { ConfigError } from "@tally/platform";
import { loadGenerationsConfig } from "./config";

describe("generations config", () => {
  it("takes the defaults (HOLD_TTL_MS 0 = the credits service's default)", () => {
    expect(loadGenerationsConfig({})).toMatchObject({ HOLD_TTL_MS: 0, PROVIDER_TIMEOUT_MS: 120_000, WORKER_LEASE_MS: 60_000 });
  });

  it("refuses a HOLD_TTL_MS that does not exceed PROVIDER_TIMEOUT_MS + WORKER_LEASE_MS", () => {
    const load = (env: Record<string, string>) => () => loadGenerationsConfig(env);
    expect(load({ HOLD_TTL_MS: "180000" })).toThrow(ConfigError);
    expect(load({ HOLD_TTL_MS: "180000" })).toThrow(/HOLD_TTL_MS: must exceed PROVIDER_TIMEOUT_MS \+ WORKER_LEASE_MS \(180000 ms\)/);
    expect(load({ HOLD_TTL_MS: "60000", PROVIDER_TIMEOUT_MS: "30000", WORKER_LEASE_MS: "30000" })).toThrow(/HOLD_TTL_MS/);
    expect(loadGenerationsConfig({ HOLD_TTL_MS: "180001" }).HOLD_TTL_MS).toBe(180_001);
    expect(loadGenerationsConfig({ HOLD_TTL_MS: "60001", PROVIDER_TIMEOUT_MS: "30000", WORKER_LEASE_MS: "30000" }).HOLD_TTL_MS).toBe(60_001);
  });
});

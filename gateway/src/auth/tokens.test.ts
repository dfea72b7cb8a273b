import { AccessTokens } from "./tokens";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";

describe("AccessTokens", () => {
  it("answers a token it verified from memory until the token's exp, then refuses it as expired", async () => {
    let now = Date.now();
    const tokens = new AccessTokens({ secret: SECRET, issuer: "tally", ttlSeconds: 60, nowMs: () => now });
    const { accessToken } = await tokens.issue({ accountId: "a1", role: "user", email: "a@example.com" });
    const first = await tokens.verify(accessToken);
    expect(first).toEqual({ kind: "user", accountId: "a1", role: "user", email: "a@example.com" });
    // A caller changing its copy changes nothing remembered.
    first.role = "admin";
    expect((await tokens.verify(accessToken)).role).toBe("user");
    now += 61_000;
    await expect(tokens.verify(accessToken)).rejects.toThrow("access token expired");
  });

  it("remembers at most verifiedTokensMax tokens, the oldest forgotten first, and never a refused one", async () => {
    let now = Date.now();
    const tokens = new AccessTokens({ secret: SECRET, issuer: "tally", ttlSeconds: 60, verifiedTokensMax: 1, nowMs: () => now });
    const older = (await tokens.issue({ accountId: "a1", role: "user", email: "a@example.com" })).accessToken;
    const newer = (await tokens.issue({ accountId: "a2", role: "user", email: "b@example.com" })).accessToken;
    await tokens.verify(older);
    await tokens.verify(newer);
    now += 61_000;
    // The newer token is remembered (the injected clock says it expired); the older one was
    // forgotten, so it is checked again by signature against the real clock: still valid.
    await expect(tokens.verify(newer)).rejects.toThrow("expired");
    expect((await tokens.verify(older)).accountId).toBe("a1");
    const forged = `${newer.slice(0, -2)}xx`;
    await expect(tokens.verify(forged)).rejects.toThrow("access token is invalid");
    await expect(tokens.verify(forged)).rejects.toThrow("access token is invalid");
  });
});

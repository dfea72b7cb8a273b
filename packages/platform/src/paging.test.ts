import { decodePageToken, encodePageToken, PAGE_TOKEN_LENGTH_MAX, resolveOffset, resolvePageSize } from "./paging";

describe("paging", () => {
  it("resolves page sizes with one rule and one error shape", () => {
    expect(resolvePageSize(0)).toBe(20);
    expect(resolvePageSize(1)).toBe(1);
    expect(resolvePageSize(100)).toBe(100);
    for (const bad of [-1, 101, 1.5, Number.NaN]) {
      expect(() => resolvePageSize(bad)).toThrow(expect.objectContaining({ reason: "validation", details: { field: "page_size" } }));
    }
    expect(() => resolvePageSize(101, { sizeDefault: 20, sizeMax: 100, field: "limit" })).toThrow(/limit must be between 1 and 100 \(0 means 20\)/);
  });

  it("refuses a negative or fractional offset", () => {
    expect(resolveOffset(0)).toBe(0);
    expect(() => resolveOffset(-1)).toThrow(/offset/);
    expect(() => resolveOffset(0.5)).toThrow(/offset/);
  });

  it("round-trips a position and refuses tokens of other scopes, versions or shapes", () => {
    const fields = { p: /^[1-9][0-9]{0,18}$/ };
    const token = encodePageToken("account-a", { p: "42" });
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodePageToken(token, "account-a", fields)).toEqual({ p: "42" });
    const refused = expect.objectContaining({ reason: "validation", details: { field: "page_token" } });
    expect(() => decodePageToken(token, "account-b", fields)).toThrow(refused);
    expect(() => decodePageToken("garbage!", "account-a", fields)).toThrow(refused);
    expect(() => decodePageToken(encodePageToken("account-a", { p: "-1" }), "account-a", fields)).toThrow(refused);
    expect(() => decodePageToken(encodePageToken("account-a", {}), "account-a", fields)).toThrow(refused);
    expect(() => decodePageToken(Buffer.from(JSON.stringify({ v: 2, s: "account-a", p: { p: "1" } })).toString("base64url"), "account-a", fields)).toThrow(refused);
    expect(() => decodePageToken("a".repeat(PAGE_TOKEN_LENGTH_MAX + 1), "account-a", fields)).toThrow(refused);
  });

  it("never echoes the token in its error", () => {
    const token = "x".repeat(PAGE_TOKEN_LENGTH_MAX + 10);
    try {
      decodePageToken(token, "s", {});
      throw new Error("expected a validation error");
    } catch (error) {
      expect(JSON.stringify({ message: (error as Error).message, details: (error as { details: unknown }).details })).not.toContain("xxxxxxxx");
    }
  });
});

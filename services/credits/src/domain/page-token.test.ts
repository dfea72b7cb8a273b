import { DomainError } from "@tally/platform";
import { decodePageToken, encodePageToken } from "./page-token";

const account = "7b0e1f9a-3c1d-4c59-9d59-0d3a3c5a1e11";
const other = "0f4a4f36-54b7-4f8f-8a62-5e1b7a7f7c0a";

describe("ledger page tokens", () => {
  it("round-trips a cursor through an opaque URL-safe token", () => {
    const token = encodePageToken({ accountId: account, position: 12345678901234n });
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodePageToken(token, account)).toEqual({ accountId: account, position: 12345678901234n });
  });

  it.each([
    ["garbage", "not a token!"],
    ["base64 of non-JSON", Buffer.from("hello").toString("base64url")],
    ["wrong version", Buffer.from(JSON.stringify({ v: 2, a: account, p: "1" })).toString("base64url")],
    ["negative position", Buffer.from(JSON.stringify({ v: 1, a: account, p: "-1" })).toString("base64url")],
    ["numeric position", Buffer.from(JSON.stringify({ v: 1, a: account, p: 1 })).toString("base64url")],
    ["JSON null", Buffer.from("null").toString("base64url")],
  ])("refuses %s with a validation error", (_name, token) => {
    expect(() => decodePageToken(token, account)).toThrow(DomainError);
    try {
      decodePageToken(token, account);
    } catch (error) {
      expect((error as DomainError).reason).toBe("validation");
    }
  });

  it("refuses a token issued for another account", () => {
    const token = encodePageToken({ accountId: other, position: 5n });
    expect(() => decodePageToken(token, account)).toThrow(/page_token/);
  });
});

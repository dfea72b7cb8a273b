import { DomainError } from "@tally/platform";
import { decodeLedgerCursor, encodeLedgerCursor } from "./ledger-cursor";

const account = "7b0e1f9a-3c1d-4c59-9d59-0d3a3c5a1e11";
const other = "0f4a4f36-54b7-4f8f-8a62-5e1b7a7f7c0a";
/** A token in the platform's format (version 1, scope, position fields) with `position` as given. */
const platformToken = (position: unknown, scope = account) =>
  Buffer.from(JSON.stringify({ v: 1, s: scope, p: { position } })).toString("base64url");

describe("ledger page tokens", () => {
  it("round-trips a cursor through an opaque URL-safe token", () => {
    const token = encodeLedgerCursor({ accountId: account, position: 12345678901234n });
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeLedgerCursor(token, account)).toEqual({ accountId: account, position: 12345678901234n });
  });

  it.each([
    ["garbage", "not a token!"],
    ["base64 of non-JSON", Buffer.from("hello").toString("base64url")],
    ["wrong version", Buffer.from(JSON.stringify({ v: 2, a: account, p: "1" })).toString("base64url")],
    ["negative position", Buffer.from(JSON.stringify({ v: 1, a: account, p: "-1" })).toString("base64url")],
    ["numeric position", Buffer.from(JSON.stringify({ v: 1, a: account, p: 1 })).toString("base64url")],
    ["JSON null", Buffer.from("null").toString("base64url")],
    ["negative position (platform format)", platformToken("-1")],
    ["numeric position (platform format)", platformToken(1)],
    ["zero position (platform format)", platformToken("0")],
  ])("refuses %s with a validation error", (_name, token) => {
    expect(() => decodeLedgerCursor(token, account)).toThrow(DomainError);
    try {
      decodeLedgerCursor(token, account);
    } catch (error) {
      expect((error as DomainError).reason).toBe("validation");
    }
  });

  it("refuses a token issued for another account", () => {
    const token = encodeLedgerCursor({ accountId: other, position: 5n });
    expect(() => decodeLedgerCursor(token, account)).toThrow(/page_token/);
  });

  it("accepts a platform-format token of this account", () => {
    expect(decodeLedgerCursor(platformToken("7"), account)).toEqual({ accountId: account, position: 7n });
  });
});

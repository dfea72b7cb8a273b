import { DomainError, newId } from "@tally/platform";
import { decodeUsageLogCursor, encodeUsageLogCursor } from "./usage-log-cursor";

describe("page token", () => {
  const userId = newId();
  const cursor = { userId, occurredAtMicros: 1_795_000_000_123_456n, id: newId() };

  it("round-trips a cursor and is opaque and URL-safe", () => {
    const token = encodeUsageLogCursor(cursor);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(token).not.toContain(cursor.id);
    expect(decodeUsageLogCursor(token, userId)).toEqual(cursor);
  });

  it("refuses another user's token", () => {
    expect(() => decodeUsageLogCursor(encodeUsageLogCursor(cursor), newId())).toThrow(/another listing/);
  });

  const forge = (body: unknown) => Buffer.from(JSON.stringify(body)).toString("base64url");
  it.each([
    ["garbage", "not a token!"],
    ["base64 of non-JSON", Buffer.from("hello").toString("base64url")],
    ["another version", forge({ v: 2, u: userId, t: "1", i: cursor.id })],
    ["a non-numeric time", forge({ v: 1, u: userId, t: "soon", i: cursor.id })],
    ["a non-UUID id", forge({ v: 1, u: userId, t: "1", i: "1; DROP TABLE usage_log" })],
    ["JSON null", forge(null)],
    ["too long", "A".repeat(600)],
  ])("refuses %s with a validation error", (_name, token) => {
    let thrown: unknown;
    try {
      decodeUsageLogCursor(token, userId);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(DomainError);
    expect((thrown as DomainError).reason).toBe("validation");
  });
});

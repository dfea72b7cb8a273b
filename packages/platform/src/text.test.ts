import { hasControlCharacter, parseEmail, parseUuid, requireText, requireUuid, notFound, EMAIL_LENGTH_MAX } from "./index";

describe("text rules", () => {
  it("refuses every C0 control character and DEL in identifiers, but tab and line breaks only outside free text", () => {
    for (let code = 0; code < 0x20; code++) expect(hasControlCharacter(`a${String.fromCharCode(code)}b`, "identifier")).toBe(true);
    expect(hasControlCharacter("a\u007fb", "identifier")).toBe(true);
    for (const allowed of ["\t", "\n", "\r"]) expect(hasControlCharacter(`a${allowed}b`, "text")).toBe(false);
    for (const refused of ["\u0000", "\u0001", "\u000b", "\u000c", "\u001b", "\u001f"]) expect(hasControlCharacter(`a${refused}b`, "text")).toBe(true);
    expect(hasControlCharacter("plain text, ünïcödé ✓", "identifier")).toBe(false);
  });

  it("requireText names the field for empty, too long and control characters", () => {
    const rule = { lengthMax: 5, kind: "identifier" as const };
    expect(requireText("abc", "name", rule)).toBe("abc");
    expect(() => requireText("", "name", rule)).toThrow(expect.objectContaining({ reason: "validation", details: { field: "name" } }));
    expect(requireText("", "name", { ...rule, required: false })).toBe("");
    expect(() => requireText("abcdef", "name", rule)).toThrow(/at most 5/);
    expect(() => requireText("a\u0000b", "name", rule)).toThrow(/control characters/);
  });

  it("normalizes and checks emails", () => {
    expect(parseEmail("  Ada@Example.COM ")).toBe("ada@example.com");
    for (const bad of ["", "ada", "ada@example", "a b@example.com", "ada@exa\u0000mple.com", `${"a".repeat(EMAIL_LENGTH_MAX)}@x.io`]) {
      expect(() => parseEmail(bad)).toThrow(expect.objectContaining({ reason: "validation", details: { field: "email" } }));
    }
  });

  it("parses UUIDs to lower case and refuses anything else", () => {
    expect(parseUuid("3F2504E0-4F89-41D3-9A0C-0305E82C3301")).toBe("3f2504e0-4f89-41d3-9a0c-0305e82c3301");
    expect(parseUuid("3f2504e0-4f89-41d3-9a0c-0305e82c330")).toBeNull();
    expect(parseUuid("not-a-uuid")).toBeNull();
    expect(() => requireUuid("nope", () => notFound("missing"))).toThrow(expect.objectContaining({ reason: "not_found" }));
  });
});

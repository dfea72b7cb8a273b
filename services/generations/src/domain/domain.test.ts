import { DomainError } from "@tally/platform";
import { creditTypeOfHold } from "./credit-type";
import { generationCancelledEventId, generationEndedEvent } from "./events";
import { parseAdoptGuestInput, parseGenerationInput, parseListGenerationsInput, type RawGenerationInput } from "./inputs";
import { creditCostOf, parsePricing } from "./pricing";

const limits = { promptLengthMax: 20, photoUrlLengthMax: 40, addressLengthMax: 30, styleLengthMax: 10 };
const userId = "0b7c3a52-1f5e-4c1e-9a51-6f0f6f0c2a11";
/** The paging part of a checked ListGenerations request. */
const resolvePaging = (limit: number, offset: number) => {
  const input = parseListGenerationsInput({ userId, limit, offset });
  return { limit: input.limit, offset: input.offset };
};
const base: RawGenerationInput = { userId, inputType: "text", prompt: "a cat", photoUrl: "", address: "", style: "" };

function fieldOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).reason).toBe("validation");
    return (error as DomainError).details.field as string;
  }
  throw new Error("expected a validation error");
}

describe("parseGenerationInput", () => {
  it("accepts a text prompt and trims it", () => {
    expect(parseGenerationInput({ ...base, prompt: "  a cat  " }, limits)).toMatchObject({ prompt: "a cat", inputType: "text" });
  });
  it("names user_id when it is not a UUID", () => {
    expect(fieldOf(() => parseGenerationInput({ ...base, userId: "bob" }, limits))).toBe("user_id");
  });
  it("names input_type when it is missing", () => {
    expect(fieldOf(() => parseGenerationInput({ ...base, inputType: undefined }, limits))).toBe("input_type");
  });
  it("requires a non-blank prompt for text", () => {
    expect(fieldOf(() => parseGenerationInput({ ...base, prompt: "   " }, limits))).toBe("prompt");
  });
  it("requires an http(s) photo_url for photo", () => {
    const photo = { ...base, inputType: "photo" as const, prompt: "" };
    expect(fieldOf(() => parseGenerationInput(photo, limits))).toBe("photo_url");
    expect(fieldOf(() => parseGenerationInput({ ...photo, photoUrl: "ftp://x.org/a.png" }, limits))).toBe("photo_url");
    expect(fieldOf(() => parseGenerationInput({ ...photo, photoUrl: "not a url" }, limits))).toBe("photo_url");
    expect(parseGenerationInput({ ...photo, photoUrl: "https://x.org/a.png" }, limits).photoUrl).toBe("https://x.org/a.png");
  });
  it("requires an address for address", () => {
    const address = { ...base, inputType: "address" as const, prompt: "" };
    expect(fieldOf(() => parseGenerationInput(address, limits))).toBe("address");
    expect(parseGenerationInput({ ...address, address: "1 Main St" }, limits).address).toBe("1 Main St");
  });
  it("enforces the length limits per field", () => {
    expect(fieldOf(() => parseGenerationInput({ ...base, prompt: "x".repeat(21) }, limits))).toBe("prompt");
    expect(fieldOf(() => parseGenerationInput({ ...base, style: "x".repeat(11) }, limits))).toBe("style");
    expect(fieldOf(() => parseGenerationInput({ ...base, address: "x".repeat(31) }, limits))).toBe("address");
    expect(parseGenerationInput({ ...base, prompt: "x".repeat(20) }, limits).prompt).toHaveLength(20);
  });
  it("rejects NUL and other C0 control characters per field, but keeps tab and line breaks", () => {
    expect(fieldOf(() => parseGenerationInput({ ...base, prompt: "a\u0000cat" }, limits))).toBe("prompt");
    expect(fieldOf(() => parseGenerationInput({ ...base, style: "neon\u0000" }, limits))).toBe("style");
    expect(fieldOf(() => parseGenerationInput({ ...base, address: "1 Main\u001bSt" }, limits))).toBe("address");
    expect(fieldOf(() => parseGenerationInput({ ...base, photoUrl: "https://x.org/\u0000.png" }, limits))).toBe("photo_url");
    expect(fieldOf(() => parseGenerationInput({ ...base, prompt: "a\u0007cat" }, limits))).toBe("prompt");
    expect(parseGenerationInput({ ...base, prompt: "a\tcat\r\non\na mat" }, limits).prompt).toBe("a\tcat\r\non\na mat");
  });
});

describe("pricing", () => {
  it("parses credits per input type as bigint", () => {
    const pricing = parsePricing('{"text":1,"photo":2,"address":3}');
    expect(creditCostOf(pricing, "address")).toBe(3n);
  });
  it("rejects missing, fractional, non-positive and unknown entries", () => {
    expect(() => parsePricing('{"text":1,"photo":2}')).toThrow(/address/);
    expect(() => parsePricing('{"text":1.5,"photo":2,"address":2}')).toThrow(/text/);
    expect(() => parsePricing('{"text":0,"photo":2,"address":2}')).toThrow(/text/);
    expect(() => parsePricing('{"text":1,"photo":2,"address":2,"video":9}')).toThrow(/video/);
    expect(() => parsePricing("nope")).toThrow(/JSON/);
  });
});

describe("creditTypeOfHold", () => {
  it("names trial, purchased and mixed holds", () => {
    expect(creditTypeOfHold({ amount: 2n, trialAmount: 2n, tokenAmount: 0n })).toBe("trial");
    expect(creditTypeOfHold({ amount: 2n, trialAmount: 0n, tokenAmount: 2n })).toBe("purchased");
    expect(creditTypeOfHold({ amount: 2n, trialAmount: 1n, tokenAmount: 1n })).toBe("mixed");
  });
  it("refuses a hold whose parts do not add up", () => {
    expect(() => creditTypeOfHold({ amount: 3n, trialAmount: 1n, tokenAmount: 1n })).toThrow();
  });
});

describe("resolvePaging", () => {
  it("defaults limit 0 to 20 and checks the ranges", () => {
    expect(resolvePaging(0, 0)).toEqual({ limit: 20, offset: 0 });
    expect(resolvePaging(100, 5)).toEqual({ limit: 100, offset: 5 });
    expect(() => resolvePaging(101, 0)).toThrow(/limit/);
    expect(() => resolvePaging(-1, 0)).toThrow(/limit/);
    expect(() => resolvePaging(10, -1)).toThrow(/offset/);
  });
});

describe("parseAdoptGuestInput", () => {
  const guestId = "5d1f2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b";
  it("lower-cases both ids", () => {
    expect(parseAdoptGuestInput({ guestId: guestId.toUpperCase(), userId })).toEqual({ guestId, userId });
  });
  it("names the malformed id", () => {
    expect(fieldOf(() => parseAdoptGuestInput({ guestId: "not-a-uuid", userId }))).toBe("guest_id");
    expect(fieldOf(() => parseAdoptGuestInput({ guestId, userId: "" }))).toBe("user_id");
  });
  it("refuses adopting a guest into itself", () => {
    expect(fieldOf(() => parseAdoptGuestInput({ guestId: userId, userId: userId.toUpperCase() }))).toBe("guest_id");
  });
});

describe("event ids", () => {
  const record = (status: "completed" | "failed" | "cancelled" | "pending") => ({ id: userId, status }) as Parameters<typeof generationEndedEvent>[0];
  it("gives a cancelled generation one id of its own, apart from its ending events", () => {
    const cancelled = generationCancelledEventId(record("cancelled"));
    expect(generationCancelledEventId(record("cancelled"))).toBe(cancelled);
    expect(cancelled).not.toBe(generationEndedEvent(record("completed")).eventId);
    expect(cancelled).not.toBe(generationEndedEvent(record("failed")).eventId);
  });
  it("has no cancelled event for a generation that was not cancelled", () => {
    expect(() => generationCancelledEventId(record("pending"))).toThrow(/INV-5/);
  });
});

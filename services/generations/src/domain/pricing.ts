import { INPUT_TYPES, type InputTypeName } from "./types";

/** Credits charged per input type. */
export type Pricing = Record<InputTypeName, bigint>;

/**
 * Parses `PRICING_CREDITS` (JSON such as `{"text":1,"photo":2,"address":2}`): every input type
 * needs a positive whole number of credits, and no unknown keys are allowed (a typo would
 * otherwise silently price a type at its default). Throws an Error naming the problem.
 */
export function parsePricing(json: string): Pricing {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new Error("PRICING_CREDITS must be JSON, e.g. {\"text\":1,\"photo\":2,\"address\":2}");
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error("PRICING_CREDITS must be a JSON object of credits per input type");
  }
  const entries = parsed as Record<string, unknown>;
  for (const key of Object.keys(entries)) {
    if (!(INPUT_TYPES as readonly string[]).includes(key)) {
      throw new Error(`PRICING_CREDITS has an unknown input type "${key}" (expected ${INPUT_TYPES.join(", ")})`);
    }
  }
  const pricing = {} as Pricing;
  for (const inputType of INPUT_TYPES) {
    const value = entries[inputType];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
      throw new Error(`PRICING_CREDITS.${inputType} must be a positive whole number of credits`);
    }
    pricing[inputType] = BigInt(value);
  }
  return pricing;
}

/** Credits a job of `inputType` costs. */
export const creditCostOf = (pricing: Pricing, inputType: InputTypeName): bigint => pricing[inputType];

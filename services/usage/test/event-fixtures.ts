/**
 * Generation events as the usage service's tests build them: one completion and one failure
 * with fixed facts (fresh ids), overridable field by field, and a check for `validation` errors.
 * The protobuf messages have the same fields, so the decoding tests use these too.
 */
import { DomainError, newId } from "@tally/platform";
import type { GenerationCompletedFacts, GenerationFailedFacts } from "../src/domain/generation-event";

export const completed = (overrides: Partial<GenerationCompletedFacts> = {}): GenerationCompletedFacts => ({
  eventId: newId(),
  occurredAt: new Date("2026-11-21T10:00:00.123Z"),
  userId: newId(),
  generationId: newId(),
  inputType: "photo",
  provider: "builtin-renderer",
  credits: 5n,
  costMicros: 120_000n,
  processingTimeMs: 4_200n,
  creditType: "trial",
  outputBytes: 2_048n,
  partialOutput: false,
  billingClassification: "",
  billingReason: "",
  parentGenerationId: "",
  ...overrides,
});

export const failed = (overrides: Partial<GenerationFailedFacts> = {}): GenerationFailedFacts => ({
  eventId: newId(),
  occurredAt: new Date("2026-11-21T10:00:00.000Z"),
  userId: newId(),
  generationId: newId(),
  inputType: "text",
  provider: "builtin-renderer",
  credits: 3n,
  costMicros: 7_000n,
  processingTimeMs: 900n,
  errorMessage: "provider timed out",
  errorCode: "provider_error",
  billingClassification: "",
  billingReason: "",
  parentGenerationId: "",
  ...overrides,
});

export const expectValidation = (fn: () => unknown, message: RegExp) => {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(DomainError);
  expect((thrown as DomainError).reason).toBe("validation");
  expect((thrown as DomainError).message).toMatch(message);
};

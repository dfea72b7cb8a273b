import { credits, generations } from "@tally/contracts";
import { presentAccount, presentBalance, presentGeneration, presentStats, toJsonInteger } from "./presenters";

const outputUrlFor = (id: string) => `http://gw.test/v1/generations/${id}/output`;

function generation(overrides: Partial<generations.Generation> = {}): generations.Generation {
  return {
    id: "0c7e2a4c-8f7e-4c33-9d0a-1b2c3d4e5f60",
    userId: "7b0c7c52-4f0e-4a53-9d43-6d2f1c0b7a11",
    status: generations.GenerationStatus.GENERATION_STATUS_PENDING,
    inputType: generations.InputType.INPUT_TYPE_TEXT,
    prompt: "a lighthouse",
    photoUrl: "",
    address: "",
    style: "",
    creditCost: 3n,
    creditType: generations.CreditType.CREDIT_TYPE_PURCHASED,
    holdId: "h",
    progressPercent: 0,
    outputContentType: "",
    errorMessage: "",
    provider: "",
    costMicros: 0n,
    processingTimeMs: 0n,
    createdAt: new Date("2026-11-21T10:00:00.000Z"),
    startedAt: undefined,
    completedAt: undefined,
    parentGenerationId: "",
    billingClassification: "original",
    billingReason: "",
    partialOutput: false,
    ...overrides,
  };
}

describe("presentGeneration", () => {
  it("uses the public API's names: lower-case enums, token credits, nulls for empty optionals", () => {
    expect(presentGeneration(generation(), outputUrlFor)).toEqual({
      id: "0c7e2a4c-8f7e-4c33-9d0a-1b2c3d4e5f60",
      user_id: "7b0c7c52-4f0e-4a53-9d43-6d2f1c0b7a11",
      status: "pending",
      input_type: "text",
      prompt: "a lighthouse",
      photo_url: null,
      address: null,
      style: null,
      credit_cost: 3,
      credit_type: "token",
      progress: 0,
      output_url: null,
      error_message: null,
      provider: null,
      cost_micros: 0,
      processing_time_ms: 0,
      created_at: "2026-11-21T10:00:00.000Z",
      started_at: null,
      completed_at: null,
      parent_generation_id: null,
      billing_classification: "original",
      billing_reason: null,
      partial_output: false,
      settlement: null,
    });
  });

  it("shows the settlement once decided, and refuses an unknown outcome or rule", () => {
    const settled = generation({ partialOutput: true, settlement: { outcome: "partial_output", rule: "capture_fraction", creditsCaptured: 1n, creditsReleased: 1n } });
    expect(presentGeneration(settled, outputUrlFor)).toMatchObject({
      partial_output: true,
      settlement: { outcome: "partial_output", rule: "capture_fraction", credits_captured: 1, credits_released: 1 },
    });
    expect(() => presentGeneration(generation({ settlement: { outcome: "refunded", rule: "release", creditsCaptured: 0n, creditsReleased: 1n } }), outputUrlFor)).toThrow(/outcome/);
    expect(() => presentGeneration(generation({ settlement: { outcome: "failed", rule: "refund", creditsCaptured: 0n, creditsReleased: 1n } }), outputUrlFor)).toThrow(/rule/);
  });

  it("shows a retry's parent, classification and reason; an answer without them is an original's", () => {
    const parent = "1d7e2a4c-8f7e-4c33-9d0a-1b2c3d4e5f60";
    const retry = generation({ parentGenerationId: parent, billingClassification: "free_retry", billingReason: "free retry 1 of 2", creditCost: 0n, creditType: 0 });
    expect(presentGeneration(retry, outputUrlFor)).toMatchObject({
      parent_generation_id: parent,
      billing_classification: "free_retry",
      billing_reason: "free retry 1 of 2",
      credit_cost: 0,
      credit_type: null,
    });
    expect(presentGeneration(generation({ billingClassification: "" }), outputUrlFor).billing_classification).toBe("original");
    expect(() => presentGeneration(generation({ billingClassification: "gift" }), outputUrlFor)).toThrow(/billing classification/);
  });

  it("gives a completed generation the absolute output URL", () => {
    const completed = presentGeneration(
      generation({ status: generations.GenerationStatus.GENERATION_STATUS_COMPLETED, costMicros: 12_500n, completedAt: new Date(0) }),
      outputUrlFor,
    );
    expect(completed.output_url).toBe("http://gw.test/v1/generations/0c7e2a4c-8f7e-4c33-9d0a-1b2c3d4e5f60/output");
    expect(completed.cost_micros).toBe(12_500);
    expect(completed.completed_at).toBe("1970-01-01T00:00:00.000Z");
  });

  it("refuses an unknown status and integers JSON cannot carry exactly", () => {
    expect(() => presentGeneration(generation({ status: generations.GenerationStatus.UNRECOGNIZED }), outputUrlFor)).toThrow(/unknown status/);
    expect(() => toJsonInteger(2n ** 53n)).toThrow(/safe/);
    expect(toJsonInteger(2n ** 53n - 1n)).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe("account presenters", () => {
  it("maps balance names to the public API's", () => {
    expect(presentBalance({ trialCredits: 5n, tokenCredits: 7n, heldCredits: 2n, availableCredits: 12n })).toEqual({
      trial_credits: 5,
      token_balance: 7,
      held: 2,
      total_available: 12,
    });
  });

  it("shows a never-signed-in account's last_login as null and the role by name", () => {
    const account = presentAccount({
      id: "a",
      email: "a@example.com",
      plan: "free",
      role: credits.Role.ROLE_ADMIN,
      kind: credits.AccountKind.ACCOUNT_KIND_USER,
      adoptedBy: "",
      createdAt: new Date("2026-01-01T00:00:00Z"),
      lastLoginAt: undefined,
      currentPeriodStart: new Date("2026-11-01T00:00:00Z"),
    });
    expect(account).toMatchObject({ role: "admin", last_login: null, current_period_start: "2026-11-01T00:00:00.000Z" });
  });

  it("gives zeros for a user without usage", () => {
    expect(presentStats(undefined)).toEqual({
      total_generations: 0, total_failed: 0, total_cost_micros: 0, total_credits_spent: 0, total_downloaded: 0, total_created: 0, total_cancelled: 0, running: 0,
      total_output_bytes: 0, average_output_bytes: 0, total_processing_time_ms: 0, average_processing_time_ms: 0, success_rate: null,
      by_input_type: {}, by_provider: {}, first_activity_at: null, last_activity_at: null,
    });
  });
});

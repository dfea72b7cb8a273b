import { loadPlanCatalog, newId } from "@tally/platform";
import type { GenerationCompletedFacts } from "./generation-event";
import { completed, expectValidation, failed } from "../../test/event-fixtures";
import { statsDelta, subjectSnapshot, sumStatsDeltas, usageLogEntryFromCompleted, usageLogEntryFromFailed } from "./usage-log";

describe("usage log entry from a GenerationCompleted", () => {
  it("is billable and carries the event's facts", () => {
    const event = completed();
    const entry = usageLogEntryFromCompleted(event);
    expect(entry).toEqual({
      eventId: event.eventId,
      userId: event.userId,
      generationId: event.generationId,
      outcome: "completed",
      billable: true,
      inputType: "photo",
      provider: "builtin-renderer",
      creditType: "trial",
      credits: 5n,
      costMicros: 120_000n,
      processingTimeMs: 4_200n,
      errorMessage: null,
      errorCode: null,
      occurredAt: event.occurredAt,
      billingClassification: "original",
      billingReason: null,
      parentGenerationId: null,
      outputBytes: 2_048n,
    });
  });

  it("keeps a retry's classification, reason and parent", () => {
    const parent = newId();
    const entry = usageLogEntryFromCompleted(completed({ billingClassification: "free_retry", billingReason: "retry 1 of 2 free", parentGenerationId: parent.toUpperCase() }));
    expect(entry).toMatchObject({ billingClassification: "free_retry", billingReason: "retry 1 of 2 free", parentGenerationId: parent });
  });

  it("counts one generation with its cost and credits", () => {
    expect(statsDelta(usageLogEntryFromCompleted(completed()))).toEqual({ generations: 1n, failed: 0n, costMicros: 120_000n, creditsSpent: 5n });
  });

  it("normalises UUIDs to lower case so one event id is one inbox key", () => {
    const id = newId();
    expect(usageLogEntryFromCompleted(completed({ eventId: id.toUpperCase() })).eventId).toBe(id);
  });

  it.each([
    ["event_id", { eventId: "not-a-uuid" }, /event_id must be a UUID/],
    ["user_id", { userId: "" }, /user_id must be a UUID/],
    ["generation_id", { generationId: "42" }, /generation_id must be a UUID/],
    ["occurred_at", { occurredAt: undefined }, /occurred_at is required/],
    ["input_type", { inputType: "" }, /input_type is required/],
    ["provider", { provider: "" }, /provider is required/],
    ["credits", { credits: -1n }, /credits must be a non-negative int64/],
    ["cost_micros", { costMicros: -5n }, /cost_micros must be a non-negative int64/],
    ["processing_time_ms", { processingTimeMs: -1n }, /processing_time_ms must be a non-negative int64/],
    ["NUL in provider", { provider: "a\u0000b" }, /provider contains a NUL character/],
    ["output_bytes", { outputBytes: -1n }, /output_bytes must be a non-negative int64/],
    ["billing_classification", { billingClassification: "gift" }, /billing_classification must be one of/],
    ["parent of an original", { parentGenerationId: "0b6f3a52-0f7c-4c1e-9d55-7a3f2b3c4d5e" }, /an original generation has no parent_generation_id/],
    ["retry without parent", { billingClassification: "paid_regeneration" }, /names its parent_generation_id/],
  ])("refuses an invalid %s", (_name, overrides, message) => {
    expectValidation(() => usageLogEntryFromCompleted(completed(overrides as Partial<GenerationCompletedFacts>)), message);
  });
});

describe("usage log entry from a GenerationFailed", () => {
  it("is not billable and keeps the error", () => {
    const entry = usageLogEntryFromFailed(failed());
    expect(entry).toMatchObject({
      outcome: "failed",
      billable: false,
      creditType: null,
      credits: 3n,
      costMicros: 7_000n,
      errorMessage: "provider timed out",
      errorCode: "provider_error",
    });
  });

  it("counts one failure and none of the money", () => {
    expect(statsDelta(usageLogEntryFromFailed(failed()))).toEqual({ generations: 0n, failed: 1n, costMicros: 0n, creditsSpent: 0n });
  });

  it("accepts a failure before any provider was chosen", () => {
    expect(usageLogEntryFromFailed(failed({ provider: "" })).provider).toBe("");
  });

  it("stores an empty error as null", () => {
    expect(usageLogEntryFromFailed(failed({ errorMessage: "", errorCode: "" }))).toMatchObject({ errorMessage: null, errorCode: null });
  });
});

describe("the subject snapshot of an entry", () => {
  const plans = loadPlanCatalog(undefined);
  const subject = { id: newId(), kind: "guest" as const, plan: plans.guestPlan, periodAnchor: null, activeReservations: 0, adoptedBy: null };

  it("names the plan, its limits by name, the period and the kind", () => {
    const period = { start: new Date("2026-11-01T00:00:00Z"), end: new Date("2026-12-01T00:00:00Z") };
    const snapshot = subjectSnapshot(subject, plans, period);
    const limits = Object.fromEntries(Object.entries(plans.plans[plans.guestPlan]!.limits).map(([name, limit]) => [name, limit!.limit]));
    expect(snapshot).toEqual({ plan: plans.guestPlan, planLimits: limits, period, subjectKind: "guest" });
  });

  it("is null where usage does not know (no row, no plan, a plan outside the catalogue)", () => {
    expect(subjectSnapshot(null, plans, null)).toEqual({ plan: null, planLimits: null, period: null, subjectKind: null });
    expect(subjectSnapshot({ ...subject, plan: "retired" }, plans, null)).toMatchObject({ plan: "retired", planLimits: null });
  });
});

describe("stats deltas summed per user for a batch", () => {
  it("adds each user's entries into one row with the latest occurred_at, users in first-seen order", () => {
    const a = newId();
    const b = newId();
    const at = (iso: string) => new Date(iso);
    const rows = sumStatsDeltas([
      { userId: a, outcome: "completed", costMicros: 10n, credits: 2n, occurredAt: at("2026-11-02T00:00:00Z") },
      { userId: b, outcome: "failed", costMicros: 99n, credits: 9n, occurredAt: at("2026-11-01T00:00:00Z") },
      { userId: a, outcome: "failed", costMicros: 5n, credits: 1n, occurredAt: at("2026-11-01T00:00:00Z") },
      { userId: a, outcome: "completed", costMicros: 7n, credits: 3n, occurredAt: at("2026-11-03T00:00:00Z") },
    ]);
    expect(rows).toEqual([
      { userId: a, delta: { generations: 2n, failed: 1n, costMicros: 17n, creditsSpent: 5n }, lastActivityAt: at("2026-11-03T00:00:00Z") },
      { userId: b, delta: { generations: 0n, failed: 1n, costMicros: 0n, creditsSpent: 0n }, lastActivityAt: at("2026-11-01T00:00:00Z") },
    ]);
    expect(sumStatsDeltas([])).toEqual([]);
  });
});

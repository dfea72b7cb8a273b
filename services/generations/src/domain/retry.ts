import assert from "node:assert";
import { DomainError } from "@tally/platform";
import type { Billing, BillingClassificationName, GenerationRecord } from "./types";

/** The classification of a retry and why, in plain words. */
export interface RetryClassification {
  billingClassification: Exclude<BillingClassificationName, "original">;
  billingReason: string;
}

/**
 * How a retry of `parent` is billed, given the free retries already started in its job
 * (`freeRetriesUsed`, counted from the job's original) and the plan's `freeRetries` per job:
 * - a failed parent: `free_retry` ("free retry n of m") while `freeRetriesUsed < freeRetries`,
 *   else `paid_regeneration` saying the free retries are used up (or that the plan has none);
 * - a completed parent: `paid_regeneration` (a new run of a finished job).
 * Errors: `generation_not_retryable` (details: generation_id, status) for a pending,
 * processing or cancelled parent.
 */
export function classifyRetry(parent: Pick<GenerationRecord, "id" | "status">, freeRetriesUsed: number, freeRetries: number): RetryClassification {
  assert.ok(freeRetriesUsed >= 0 && freeRetries >= 0, "free retry counts are not negative");
  checkRetryable(parent);
  if (parent.status === "completed") {
    return { billingClassification: "paid_regeneration", billingReason: "regeneration of a completed generation" };
  }
  if (freeRetriesUsed < freeRetries) {
    return { billingClassification: "free_retry", billingReason: `free retry ${freeRetriesUsed + 1} of ${freeRetries}` };
  }
  return {
    billingClassification: "paid_regeneration",
    billingReason:
      freeRetries === 0
        ? "retry of a failed generation; the plan has no free retries"
        : `retry of a failed generation; the ${freeRetries} free ${freeRetries === 1 ? "retry of this job is" : "retries of this job are"} used up`,
  };
}

/**
 * Refuses to retry a generation that has not ended as `failed` or `completed`. Errors:
 * `generation_not_retryable` (details: generation_id, generation_status).
 */
export function checkRetryable(parent: Pick<GenerationRecord, "id" | "status">): void {
  if (parent.status === "failed" || parent.status === "completed") return;
  throw new DomainError("generation_not_retryable", `generation ${parent.id} is ${parent.status}: only a failed or completed generation can be retried`, {
    generation_id: parent.id,
    generation_status: parent.status,
  });
}

/** The billing of a retry of `parent` classified as `classification` (its job's original is the root). */
export function retryBilling(parent: Pick<GenerationRecord, "id" | "rootGenerationId">, classification: RetryClassification): Billing {
  return { ...classification, parentGenerationId: parent.id, rootGenerationId: parent.rootGenerationId ?? parent.id };
}

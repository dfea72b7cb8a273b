import { DomainError } from "@tally/platform";
import { classifyRetry, retryBilling } from "./retry";

const failed = { id: "g1", status: "failed" as const };

describe("classifyRetry", () => {
  it("makes a retry of a failed job free while the plan's free retries last", () => {
    expect(classifyRetry(failed, 0, 2)).toEqual({ billingClassification: "free_retry", billingReason: "free retry 1 of 2" });
    expect(classifyRetry(failed, 1, 2)).toEqual({ billingClassification: "free_retry", billingReason: "free retry 2 of 2" });
  });

  it("charges a retry of a failed job beyond the allowance, saying why", () => {
    expect(classifyRetry(failed, 2, 2)).toEqual({
      billingClassification: "paid_regeneration",
      billingReason: "retry of a failed generation; the 2 free retries of this job are used up",
    });
    expect(classifyRetry(failed, 1, 1).billingReason).toBe("retry of a failed generation; the 1 free retry of this job is used up");
    expect(classifyRetry(failed, 0, 0).billingReason).toBe("retry of a failed generation; the plan has no free retries");
  });

  it("charges a new run of a completed job", () => {
    expect(classifyRetry({ id: "g1", status: "completed" }, 0, 3)).toEqual({
      billingClassification: "paid_regeneration",
      billingReason: "regeneration of a completed generation",
    });
  });

  it.each(["pending", "processing", "cancelled"] as const)("refuses a %s generation with generation_not_retryable", (status) => {
    const attempt = () => classifyRetry({ id: "g1", status }, 0, 3);
    expect(attempt).toThrow(DomainError);
    expect(attempt).toThrow(expect.objectContaining({ reason: "generation_not_retryable", details: { generation_id: "g1", generation_status: status } }));
  });
});

describe("retryBilling", () => {
  it("links the retry to its parent and to the job's original", () => {
    const classification = classifyRetry(failed, 0, 1);
    expect(retryBilling({ id: "g1", rootGenerationId: null }, classification)).toMatchObject({ parentGenerationId: "g1", rootGenerationId: "g1" });
    expect(retryBilling({ id: "g2", rootGenerationId: "g1" }, classification)).toMatchObject({ parentGenerationId: "g2", rootGenerationId: "g1" });
  });
});

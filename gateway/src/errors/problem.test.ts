import { buildProblem } from "./problem";

describe("problem documents", () => {
  it("copies a domain error's details as members, numbers from integer strings", () => {
    const problem = buildProblem("https://tally.dev/problems/", "insufficient_credits", "not enough", { requested: "3", available: "1" }, "/v1/generations");
    expect(problem).toEqual({
      type: "https://tally.dev/problems/insufficient_credits",
      title: expect.any(String),
      status: 402,
      detail: "not enough",
      code: "insufficient_credits",
      instance: "/v1/generations",
      requested: 3,
      available: 1,
    });
  });

  it("never leaks the internal request_id, and details cannot overwrite reserved members", () => {
    const problem = buildProblem("https://tally.dev/problems/", "idempotency_key_reused", "reused", {
      request_id: "5f0e4a36-1a3b-5c2d-8e4f-0a1b2c3d4e5f",
      status: 200,
      code: "ok",
    });
    expect(problem).not.toHaveProperty("request_id");
    expect(problem).toMatchObject({ status: 409, code: "idempotency_key_reused" });
  });
});

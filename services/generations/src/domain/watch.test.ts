import { parseChangeNotice } from "./watch";

describe("parseChangeNotice", () => {
  it("reads the trigger's payload, seq as a bigint", () => {
    expect(parseChangeNotice('{"id":"5b0e0000-0000-4000-8000-000000000001","seq":7,"status":"processing","progress_percent":40}')).toEqual({
      id: "5b0e0000-0000-4000-8000-000000000001",
      seq: 7n,
      status: "processing",
      progressPercent: 40,
    });
  });

  it("answers null for anything else (the listener logs and skips it)", () => {
    for (const payload of ["", "not json", "null", "[]", '{"id":1,"seq":1,"status":"pending","progress_percent":0}', '{"id":"x","seq":"1","status":"pending","progress_percent":0}', '{"id":"x","seq":1}']) {
      expect([payload, parseChangeNotice(payload)]).toEqual([payload, null]);
    }
  });
});

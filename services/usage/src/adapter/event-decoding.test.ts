import { events } from "@tally/contracts";
import { completed, expectValidation, failed } from "../../test/event-fixtures";
import { decodeGenerationEvent } from "./event-decoding";

describe("decodeGenerationEvent", () => {
  it("decodes each subject with its message type", () => {
    const done = completed();
    const entry = decodeGenerationEvent("tally", "tally.generation.completed", events.GenerationCompleted.encode(done).finish());
    expect(entry).toMatchObject({ eventId: done.eventId, outcome: "completed", credits: 5n });
    const failure = failed();
    const failedEntry = decodeGenerationEvent("tally", "tally.generation.failed", events.GenerationFailed.encode(failure).finish());
    expect(failedEntry).toMatchObject({ eventId: failure.eventId, outcome: "failed", errorCode: "provider_error" });
  });

  it("refuses an unknown subject", () => {
    expectValidation(() => decodeGenerationEvent("tally", "tally.generation.started", new Uint8Array()), /unknown subject/);
  });

  it("refuses a payload that is not protobuf", () => {
    expectValidation(
      () => decodeGenerationEvent("tally", "tally.generation.completed", Buffer.from("this is not protobuf, it is text")),
      /not a valid protobuf message|must be a UUID/,
    );
  });

  it("refuses an empty payload (every required field missing)", () => {
    expectValidation(() => decodeGenerationEvent("tally", "tally.generation.failed", new Uint8Array()), /event_id must be a UUID/);
  });
});

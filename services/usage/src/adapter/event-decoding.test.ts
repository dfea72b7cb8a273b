import { events } from "@tally/contracts";
import { newId } from "@tally/platform";
import { completed, expectValidation, failed } from "../../test/event-fixtures";
import { decodeDownloadedEvent, decodeGenerationEvent } from "./event-decoding";

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

describe("decodeDownloadedEvent", () => {
  const download = (overrides: Partial<events.GenerationDownloaded> = {}): events.GenerationDownloaded => ({
    eventId: newId(),
    occurredAt: new Date("2026-11-21T10:00:00.000Z"),
    userId: newId(),
    generationId: newId(),
    outputBytes: 4_096n,
    ...overrides,
  });

  it("decodes a download, ids lower-cased", () => {
    const event = download();
    const decoded = decodeDownloadedEvent("tally.generation.downloaded", events.GenerationDownloaded.encode({ ...event, eventId: event.eventId.toUpperCase() }).finish());
    expect(decoded).toEqual({ eventId: event.eventId, userId: event.userId, generationId: event.generationId, outputBytes: 4_096n, occurredAt: event.occurredAt });
  });

  it.each([
    ["generation_id", { generationId: "x" }, /generation_id must be a UUID/],
    ["occurred_at", { occurredAt: undefined }, /occurred_at is required/],
    ["output_bytes", { outputBytes: -1n }, /output_bytes must be a non-negative int64/],
  ])("refuses an invalid %s", (_name, overrides, message) => {
    expectValidation(() => decodeDownloadedEvent("tally.generation.downloaded", events.GenerationDownloaded.encode(download(overrides)).finish()), message);
  });
});

import { events } from "@tally/contracts";
import { DomainError, newId } from "@tally/platform";
import { decodeGenerationEvent } from "./event-decoding";

const completed = (overrides: Partial<events.GenerationCompleted> = {}): events.GenerationCompleted => ({
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
  ...overrides,
});

const failed = (overrides: Partial<events.GenerationFailed> = {}): events.GenerationFailed => ({
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
  ...overrides,
});

const expectValidation = (fn: () => unknown, message: RegExp) => {
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

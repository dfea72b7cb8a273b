import { events } from "@tally/contracts";
import { deterministicUuid, generationSubjects } from "@tally/platform";
import type { GenerationRecord } from "../domain/generation";

/** An event ready for the outbox. */
export interface OutboxEvent {
  eventId: string;
  subject: string;
  payload: Uint8Array;
}

/**
 * The event of a finished generation: GenerationCompleted (credits captured) or
 * GenerationFailed (credits held and released). The event id is derived from the generation,
 * so whichever worker ends a job, its event has one id and consumers count it once.
 */
export function generationEndedEvent(record: GenerationRecord, subjectPrefix: string, occurredAt: Date): OutboxEvent {
  const subjects = generationSubjects(subjectPrefix);
  if (record.status === "completed") {
    const eventId = deterministicUuid("generation.completed", record.id);
    const message: events.GenerationCompleted = {
      eventId,
      occurredAt,
      userId: record.userId,
      generationId: record.id,
      inputType: record.inputType,
      provider: record.provider,
      credits: record.creditCost,
      costMicros: record.costMicros,
      processingTimeMs: record.processingTimeMs,
      creditType: record.creditType,
    };
    return { eventId, subject: subjects.completed, payload: events.GenerationCompleted.encode(message).finish() };
  }
  if (record.status === "failed") {
    const eventId = deterministicUuid("generation.failed", record.id);
    const message: events.GenerationFailed = {
      eventId,
      occurredAt,
      userId: record.userId,
      generationId: record.id,
      inputType: record.inputType,
      provider: record.provider,
      credits: record.creditCost,
      costMicros: record.costMicros,
      processingTimeMs: record.processingTimeMs,
      errorMessage: record.errorMessage,
      errorCode: record.errorCode,
    };
    return { eventId, subject: subjects.failed, payload: events.GenerationFailed.encode(message).finish() };
  }
  throw new Error(`no event for a generation in status ${record.status}`);
}

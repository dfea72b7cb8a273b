import { events } from "@tally/contracts";
import { generationSubjects } from "@tally/platform";
import { generationCancelledEventId, generationEndedEvent } from "../domain/events";
import type { EncodedEvent, EventEncoder } from "../domain/ports";
import type { Download, GenerationRecord } from "../domain/types";

/**
 * The events of finished and cancelled generations in the contract's encoding (events.proto), on the
 * subjects under `subjectPrefix` that the usage service consumes.
 */
export class ProtoEventEncoder implements EventEncoder {
  private readonly subjects;

  constructor(subjectPrefix: string) {
    this.subjects = generationSubjects(subjectPrefix);
  }

  /** GenerationCompleted (credits captured) or GenerationFailed (credits held and released). */
  generationEnded(record: GenerationRecord, occurredAt: Date, outputBytes: bigint): EncodedEvent {
    const { kind, eventId } = generationEndedEvent(record);
    const common = {
      eventId,
      occurredAt,
      userId: record.userId,
      generationId: record.id,
      inputType: record.inputType,
      provider: record.provider,
      credits: record.creditCost,
      costMicros: record.costMicros,
      processingTimeMs: record.processingTimeMs,
      // How the generation is billed (a free retry's credits are 0) and what it retries.
      billingClassification: record.billingClassification,
      billingReason: record.billingReason,
      parentGenerationId: record.parentGenerationId ?? "",
    };
    if (kind === "completed") {
      // A free retry was paid by no credits: the contract's "" (none).
      const creditType = record.creditType === "none" ? "" : record.creditType;
      const message: events.GenerationCompleted = { ...common, creditType, outputBytes };
      return { eventId, subject: this.subjects.completed, payload: events.GenerationCompleted.encode(message).finish() };
    }
    const message: events.GenerationFailed = { ...common, errorMessage: record.errorMessage, errorCode: record.errorCode };
    return { eventId, subject: this.subjects.failed, payload: events.GenerationFailed.encode(message).finish() };
  }

  /** GenerationDownloaded (one download request; not billable). */
  generationDownloaded(download: Download, occurredAt: Date): EncodedEvent {
    const message: events.GenerationDownloaded = { ...download, occurredAt };
    return { eventId: download.eventId, subject: this.subjects.downloaded, payload: events.GenerationDownloaded.encode(message).finish() };
  }

  /** GenerationCancelled (credits held and released; the usage service releases the quota reservation). */
  generationCancelled(record: GenerationRecord, occurredAt: Date): EncodedEvent {
    const eventId = generationCancelledEventId(record);
    const message: events.GenerationCancelled = {
      eventId,
      occurredAt,
      userId: record.userId,
      generationId: record.id,
      inputType: record.inputType,
      credits: record.creditCost,
    };
    return { eventId, subject: this.subjects.cancelled, payload: events.GenerationCancelled.encode(message).finish() };
  }
}

import { events } from "@tally/contracts";
import { generationSubjects } from "@tally/platform";
import { generationCancelledEventId, generationEndedEvent } from "../domain/events";
import { revenueMicrosOf } from "../domain/settlement-rules";
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

  /**
   * GenerationCompleted (`credits`: those captured) or GenerationFailed (`credits`: those
   * held), each with its settlement (rule, split, plan, price, revenue).
   */
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
      settlement: settlementOfRecord(record),
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
      const credits = record.settlement ? record.settlement.creditsCaptured : record.creditCost;
      const message: events.GenerationCompleted = { ...common, credits, creditType, outputBytes, partialOutput: record.partialOutput };
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

  /**
   * GenerationCancelled (`credits`: those held; the settlement says what was captured and
   * released; the usage service releases the quota reservation).
   */
  generationCancelled(record: GenerationRecord, occurredAt: Date): EncodedEvent {
    const eventId = generationCancelledEventId(record);
    const message: events.GenerationCancelled = {
      eventId,
      occurredAt,
      userId: record.userId,
      generationId: record.id,
      inputType: record.inputType,
      credits: record.creditCost,
      settlement: settlementOfRecord(record),
      costMicros: record.spentMicros,
      provider: record.provider,
    };
    return { eventId, subject: this.subjects.cancelled, payload: events.GenerationCancelled.encode(message).finish() };
  }
}

/** The event's Settlement of a generation whose settlement is decided (undefined before). */
function settlementOfRecord(record: GenerationRecord): events.Settlement | undefined {
  const settlement = record.settlement;
  if (!settlement) return undefined;
  return {
    outcome: settlement.outcome,
    rule: settlement.rule,
    creditsCaptured: settlement.creditsCaptured,
    creditsReleased: settlement.creditsReleased,
    plan: record.plan,
    creditPriceMicros: record.creditPriceMicros,
    revenueMicros: revenueMicrosOf(settlement.creditsCaptured, record.creditPriceMicros),
  };
}

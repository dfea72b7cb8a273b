import assert from "node:assert";
import { deterministicUuid } from "@tally/platform";
import type { GenerationRecord } from "./types";

/** Which event a finished generation gives: GenerationCompleted or GenerationFailed. */
export type GenerationEndedKind = "completed" | "failed";

/**
 * The kind and id of a finished generation's event. The id is derived from the generation, so
 * whichever worker ends a job (and however often it redoes the ending), its event has one id,
 * the stream de-duplicates it and consumers count it once (INV-5). Only a completed or failed
 * generation has one (a cancel has its own event, generationCancelledEventId): anything else is a bug.
 */
export function generationEndedEvent(generation: GenerationRecord): { kind: GenerationEndedKind; eventId: string } {
  const { status } = generation;
  assert.ok(status === "completed" || status === "failed", `INV-5: only a completed or failed generation has an event (status ${status})`);
  return { kind: status, eventId: deterministicUuid(`generation.${status}`, generation.id) };
}

/**
 * The id of the GenerationDownloaded event of download request `requestId` (the caller's
 * idempotency key) of `userId`'s generation `generationId`: the same request always gives the
 * same id, so the outbox, the stream and usage's inbox count it once however often it is
 * retried (INV-4, INV-5); any other request gives another id.
 */
export function generationDownloadedEventId(userId: string, generationId: string, requestId: string): string {
  return deterministicUuid("generation.downloaded", userId, generationId, requestId);
}

/**
 * The id of a cancelled generation's GenerationCancelled event, derived from the generation
 * (a generation is cancelled at most once), so the stream and consumers drop a re-publish (INV-5).
 */
export function generationCancelledEventId(generation: GenerationRecord): string {
  assert.ok(generation.status === "cancelled", `INV-5: only a cancelled generation has a cancelled event (status ${generation.status})`);
  return deterministicUuid("generation.cancelled", generation.id);
}

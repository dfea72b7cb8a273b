import { events } from "@tally/contracts";
import { generationSubjects, validationError } from "@tally/platform";
import { checkCancellation, checkDownload, type GenerationCancellation } from "../domain/generation-event";
import type { DownloadDraft, UsageLogEntryDraft } from "../domain/types";
import { usageLogEntryFromCompleted, usageLogEntryFromFailed } from "../domain/usage-log";

/**
 * Decodes a generation event by its subject (the protobuf stays here) and hands the plain
 * event to the domain, which maps it to the usage log entry it records. `prefix` is the
 * subject prefix the producer publishes under (e.g. `tally`).
 *
 * Throws `validation` when the message can never be processed: an unknown subject, a payload
 * that is not the subject's protobuf message, or invalid fields. The consumer dead-letters
 * such messages instead of retrying them forever.
 */
export function decodeGenerationEvent(prefix: string, subject: string, payload: Uint8Array): UsageLogEntryDraft {
  const subjects = generationSubjects(prefix);
  if (subject === subjects.completed) return usageLogEntryFromCompleted(decode(events.GenerationCompleted, payload, subject));
  if (subject === subjects.failed) return usageLogEntryFromFailed(decode(events.GenerationFailed, payload, subject));
  throw validationError(`unknown subject ${subject}`, { subject });
}

/**
 * Decodes a `GenerationCancelled` payload and checks it. Throws `validation` when it can never
 * be processed (undecodable payload, malformed ids), so the consumer dead-letters it.
 */
export function decodeCancelledEvent(subject: string, payload: Uint8Array): GenerationCancellation {
  return checkCancellation(decode(events.GenerationCancelled, payload, subject));
}

/**
 * Decodes a `GenerationDownloaded` payload and checks it. Throws `validation` when it can never
 * be processed (undecodable payload, malformed ids), so the consumer dead-letters it.
 */
export function decodeDownloadedEvent(subject: string, payload: Uint8Array): DownloadDraft {
  return checkDownload(decode(events.GenerationDownloaded, payload, subject));
}

function decode<T>(codec: { decode(bytes: Uint8Array): T }, payload: Uint8Array, subject: string): T {
  try {
    return codec.decode(payload);
  } catch (error) {
    throw validationError(`payload on ${subject} is not a valid protobuf message: ${(error as Error).message}`, { subject });
  }
}

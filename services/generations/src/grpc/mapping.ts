import { generations } from "@tally/contracts";
import type { RawCreateGenerationInput } from "../domain/inputs";
import type { CreditTypeName, Generation, GenerationStatusName, InputTypeName } from "../domain/types";
import type { WatchedChange } from "../domain/watch";

/** Proto ⇄ domain for tally.generations.v1: enum values, the request fields, the Generation message. */

const STATUS: Record<GenerationStatusName, generations.GenerationStatus> = {
  pending: generations.GenerationStatus.GENERATION_STATUS_PENDING,
  processing: generations.GenerationStatus.GENERATION_STATUS_PROCESSING,
  completed: generations.GenerationStatus.GENERATION_STATUS_COMPLETED,
  failed: generations.GenerationStatus.GENERATION_STATUS_FAILED,
  cancelled: generations.GenerationStatus.GENERATION_STATUS_CANCELLED,
};

const INPUT_TYPE: Record<InputTypeName, generations.InputType> = {
  text: generations.InputType.INPUT_TYPE_TEXT,
  photo: generations.InputType.INPUT_TYPE_PHOTO,
  address: generations.InputType.INPUT_TYPE_ADDRESS,
};

const CREDIT_TYPE: Record<CreditTypeName, generations.CreditType> = {
  // A free retry is paid by no credits.
  none: generations.CreditType.CREDIT_TYPE_UNSPECIFIED,
  trial: generations.CreditType.CREDIT_TYPE_TRIAL,
  purchased: generations.CreditType.CREDIT_TYPE_PURCHASED,
  mixed: generations.CreditType.CREDIT_TYPE_MIXED,
};

/** The input type's name for a proto enum value, or undefined for UNSPECIFIED/unknown values (a `validation` error later). */
export function inputTypeName(value: generations.InputType): InputTypeName | undefined {
  return (Object.keys(INPUT_TYPE) as InputTypeName[]).find((name) => INPUT_TYPE[name] === value);
}

/** CreateGenerationRequest as the domain's raw input (checked by parseCreateGenerationInput). */
export function fromCreateGenerationRequest(request: generations.CreateGenerationRequest): RawCreateGenerationInput {
  return {
    requestId: request.requestId,
    userId: request.userId,
    inputType: inputTypeName(request.inputType),
    prompt: request.prompt,
    photoUrl: request.photoUrl,
    address: request.address,
    style: request.style,
    account: request.account
      ? { id: request.account.id, guest: request.account.guest, plan: request.account.plan, periodAnchor: request.account.currentPeriodStart }
      : undefined,
  };
}

/** The contract's Generation message. */
export function toProtoGeneration(generation: Generation): generations.Generation {
  return {
    id: generation.id,
    userId: generation.userId,
    status: STATUS[generation.status],
    inputType: INPUT_TYPE[generation.inputType],
    prompt: generation.prompt,
    photoUrl: generation.photoUrl,
    address: generation.address,
    style: generation.style,
    creditCost: generation.creditCost,
    creditType: CREDIT_TYPE[generation.creditType],
    holdId: generation.holdId,
    progressPercent: generation.progressPercent,
    outputContentType: generation.outputContentType,
    errorMessage: generation.errorMessage,
    provider: generation.provider,
    costMicros: generation.costMicros,
    processingTimeMs: generation.processingTimeMs,
    createdAt: generation.createdAt,
    startedAt: generation.startedAt ?? undefined,
    completedAt: generation.completedAt ?? undefined,
    // Answers stored before retries existed have no billing fields: an original's.
    parentGenerationId: generation.parentGenerationId ?? "",
    billingClassification: generation.billingClassification ?? "original",
    billingReason: generation.billingReason ?? "",
    // Answers stored before settlements were recorded have none.
    settlement: generation.settlement
      ? {
          outcome: generation.settlement.outcome,
          rule: generation.settlement.rule,
          creditsCaptured: generation.settlement.creditsCaptured,
          creditsReleased: generation.settlement.creditsReleased,
        }
      : undefined,
    partialOutput: generation.partialOutput ?? false,
  };
}

/** A watched change as the contract's WatchGenerationResponse (the whole generation only on snapshots and changes of status). */
export function toProtoWatchResponse(change: WatchedChange): generations.WatchGenerationResponse {
  return {
    generationId: change.id,
    seq: change.seq,
    status: STATUS[change.status],
    progressPercent: change.progressPercent,
    generation: change.generation ? toProtoGeneration(change.generation) : undefined,
  };
}

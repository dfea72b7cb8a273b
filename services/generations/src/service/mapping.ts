import { generations } from "@tally/contracts";
import type { CreditTypeName, GenerationRecord, GenerationStatusName, InputTypeName } from "../domain/generation";

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
  trial: generations.CreditType.CREDIT_TYPE_TRIAL,
  purchased: generations.CreditType.CREDIT_TYPE_PURCHASED,
  mixed: generations.CreditType.CREDIT_TYPE_MIXED,
};

/** The input type's name for a proto enum value, or undefined for UNSPECIFIED/unknown values. */
export function inputTypeName(value: generations.InputType): InputTypeName | undefined {
  return (Object.keys(INPUT_TYPE) as InputTypeName[]).find((name) => INPUT_TYPE[name] === value);
}

/** The contract's view of a generation (internal fields such as the settlement stay inside). */
export function toProtoGeneration(record: GenerationRecord): generations.Generation {
  return {
    id: record.id,
    userId: record.userId,
    status: STATUS[record.status],
    inputType: INPUT_TYPE[record.inputType],
    prompt: record.prompt,
    photoUrl: record.photoUrl,
    address: record.address,
    style: record.style,
    creditCost: record.creditCost,
    creditType: CREDIT_TYPE[record.creditType],
    holdId: record.holdId,
    progressPercent: record.progressPercent,
    outputContentType: record.status === "completed" ? record.outputContentType : "",
    errorMessage: record.errorMessage,
    provider: record.provider,
    costMicros: record.costMicros,
    processingTimeMs: record.processingTimeMs,
    createdAt: record.createdAt,
    startedAt: record.startedAt ?? undefined,
    completedAt: record.completedAt ?? undefined,
  };
}

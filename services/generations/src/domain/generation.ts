/** Input types a generation can start from (the names used in storage, events and pricing). */
export const INPUT_TYPES = ["text", "photo", "address"] as const;
export type InputTypeName = (typeof INPUT_TYPES)[number];

/** pending -> processing -> completed | failed; pending or processing -> cancelled. */
export type GenerationStatusName = "pending" | "processing" | "completed" | "failed" | "cancelled";

/** Which credits paid for a generation. */
export type CreditTypeName = "trial" | "purchased" | "mixed";

/**
 * How a job's hold ends, decided before the credits service is called so that a worker that
 * crashes in between redoes the same call (capture for a completed job, release otherwise).
 */
export type Settlement = "capture" | "release";

/** A generation as the service layer sees it (the adapter maps rows to this). */
export interface GenerationRecord {
  id: string;
  userId: string;
  status: GenerationStatusName;
  inputType: InputTypeName;
  prompt: string;
  photoUrl: string;
  address: string;
  style: string;
  /** Credits held for the job (charged when it completes). */
  creditCost: bigint;
  creditType: CreditTypeName;
  holdId: string;
  /** 0..100. */
  progressPercent: number;
  provider: string;
  outputContentType: string;
  errorMessage: string;
  errorCode: string;
  /** What the provider's work cost, in micro-units of the currency. */
  costMicros: bigint;
  processingTimeMs: bigint;
  settlement: Settlement | null;
  createdAt: Date;
  startedAt: Date | null;
  completedAt: Date | null;
}

/** What a provider is given to work from. */
export interface GenerationJob {
  id: string;
  userId: string;
  inputType: InputTypeName;
  prompt: string;
  photoUrl: string;
  address: string;
  style: string;
}

/** Validated input of CreateGeneration. */
export interface GenerationInput {
  userId: string;
  inputType: InputTypeName;
  prompt: string;
  photoUrl: string;
  address: string;
  style: string;
}

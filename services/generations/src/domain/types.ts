import { decideSettlement, type SettlementDecision, type SettlementTerms } from "./settlement-rules";

/** Input types a generation can start from (the names used in storage, events and pricing). */
export const INPUT_TYPES = ["text", "photo", "address"] as const;
export type InputTypeName = (typeof INPUT_TYPES)[number];

/** pending -> processing -> completed | failed; pending or processing -> cancelled. */
export type GenerationStatusName = "pending" | "processing" | "completed" | "failed" | "cancelled";

/** Which credits paid for a generation; `none` for a free retry (nothing held). */
export type CreditTypeName = "trial" | "purchased" | "mixed" | "none";

/**
 * How a generation is billed: an `original` (CreateGeneration), a `free_retry` of a failed job
 * (nothing held or charged) or a `paid_regeneration` (a retry beyond the plan's free retries,
 * or a new run of a completed job), charged as usual.
 */
export type BillingClassificationName = "original" | "free_retry" | "paid_regeneration";

/** How a new generation is billed and what it retries (null parent and root for an original). */
export interface Billing {
  billingClassification: BillingClassificationName;
  /** Why, in plain words (e.g. "free retry 1 of 2"); "" for an original. */
  billingReason: string;
  /** The generation retried or regenerated. */
  parentGenerationId: string | null;
  /** The original of the chain (a retry of a retry belongs to the same job). */
  rootGenerationId: string | null;
}

/** The billing of a generation made by CreateGeneration. */
export const ORIGINAL_BILLING: Billing = { billingClassification: "original", billingReason: "", parentGenerationId: null, rootGenerationId: null };

/**
 * How a job's hold ends, decided before the credits service is called so that a worker that
 * takes over a crashed job redoes the same call (INV-3): the outcome, the plan's refund rule
 * applied and the split of the hold (domain/settlement-rules.ts). Credits is asked to capture
 * `creditsCaptured` (releasing the rest) when it is > 0, else to release the hold.
 */
export type Settlement = SettlementDecision;

/** A generation as the service and the worker see it, internal fields included (the adapter maps rows to this). */
export interface GenerationRecord extends Billing {
  id: string;
  userId: string;
  status: GenerationStatusName;
  inputType: InputTypeName;
  prompt: string;
  photoUrl: string;
  address: string;
  style: string;
  /** Credits held for the job (charged when it completes); 0 for a free retry. */
  creditCost: bigint;
  creditType: CreditTypeName;
  /** "" for a free retry (it holds nothing). */
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
  /** The plan the job was created under ("" before plans were recorded on jobs). */
  plan: string;
  /** The plan's price per credit when the job was created, in micro-units of the currency. */
  creditPriceMicros: bigint;
  /** The provider's measured spend while running, as last reported, in micro-units of the currency. */
  spentMicros: bigint;
  /** The provider delivered a partial output (and said so). */
  partialOutput: boolean;
  /** Null until the job's ending is decided. */
  settlement: Settlement | null;
  createdAt: Date;
  startedAt: Date | null;
  completedAt: Date | null;
}

/**
 * A generation as its user sees it (what the service answers, and what an idempotent create,
 * retry or cancel stores as its first answer): the record without its internal error code,
 * root, plan terms and running spend; `outputContentType` is empty unless the generation
 * completed; `settlement` is null until the job's ending is decided. Answers stored before
 * retries (or settlements) existed lack those fields: read them as an original's (not settled).
 */
export type Generation = Omit<GenerationRecord, "errorCode" | "rootGenerationId" | "plan" | "creditPriceMicros" | "spentMicros">;

/** The user's view of a record: internal fields stay inside, and only a completed job names an output. */
export function toGeneration(record: GenerationRecord): Generation {
  const { errorCode: _errorCode, rootGenerationId: _root, plan: _plan, creditPriceMicros: _price, spentMicros: _spent, ...visible } = record;
  return { ...visible, outputContentType: record.status === "completed" ? record.outputContentType : "" };
}

/** One page of a user's generations, newest first, and how many they have in all. */
export interface GenerationPage {
  generations: Generation[];
  totalSize: number;
}

/** One download request of a completed generation's output: what its event tells. */
export interface Download {
  /** Derived from the user, the generation and the request id (generationDownloadedEventId). */
  eventId: string;
  userId: string;
  generationId: string;
  outputBytes: bigint;
}

/** The stored output of a completed generation. */
export interface GenerationOutput {
  content: Uint8Array;
  contentType: string;
}

/** What a provider is given to work from: the job's checked input and its id. */
export type GenerationJob = GenerationInput & { id: string };

/** The input a generation was made from (what a retry starts again from). */
export function inputOf(g: GenerationRecord): GenerationInput {
  return { userId: g.userId, inputType: g.inputType, prompt: g.prompt, photoUrl: g.photoUrl, address: g.address, style: g.style };
}

/** The job a provider works on, from its record. */
export function toJob(g: GenerationRecord): GenerationJob {
  return { id: g.id, userId: g.userId, inputType: g.inputType, prompt: g.prompt, photoUrl: g.photoUrl, address: g.address, style: g.style };
}

/** Checked input of CreateGeneration (what the job is made from; the request id is not part of it). */
export interface GenerationInput {
  /** Lower-cased UUID. */
  userId: string;
  inputType: InputTypeName;
  prompt: string;
  photoUrl: string;
  address: string;
  style: string;
}

/** A generation about to be stored `pending`, its hold taken (none for a free retry). */
export interface NewGeneration extends GenerationInput, Billing {
  id: string;
  creditCost: bigint;
  creditType: CreditTypeName;
  holdId: string;
  traceparent: string | null;
  /** The account's plan and its price per credit now (the job's settlement terms). */
  plan: string;
  creditPriceMicros: bigint;
}

/** A job handed to one worker by a claim. */
export interface ClaimedJob {
  generation: GenerationRecord;
  /** Identifies this claim: only its holder may renew the lease or record the outcome. */
  leaseToken: string;
  traceparent: string | null;
}

/** What a provider run came to (step 1 of ending a job). */
export type JobOutcome =
  | { kind: "completed"; content: Uint8Array; contentType: string; costMicros: bigint; processingTimeMs: bigint; partial: boolean }
  | { kind: "failed"; errorMessage: string; errorCode: string; costMicros: bigint; processingTimeMs: bigint };

/**
 * The settlement a job's outcome decides under its plan's terms (INV-3): a full completion
 * captures the whole hold; a partial output or a failure applies the plan's refund rule, with
 * the provider's measured spend (the outcome's cost, or the last one reported while running).
 */
export function settlementOf(generation: GenerationRecord, outcome: JobOutcome, terms: SettlementTerms): Settlement {
  const kind = outcome.kind === "completed" ? (outcome.partial ? "partial_output" : "completed") : "failed";
  const spent = outcome.costMicros > generation.spentMicros ? outcome.costMicros : generation.spentMicros;
  return decideSettlement(kind, generation.creditCost, spent, terms);
}

/**
 * How a job ends once credits answered (step 3): `completed`, or `failed` with the error given
 * here (else the one recorded in step 1); `uncharged` when credits refused the capture (the
 * hold had ended), so nothing was captured whatever the settlement decided.
 */
export type JobEnding = { status: "completed" } | { status: "failed"; errorMessage?: string; errorCode?: string; uncharged?: boolean };

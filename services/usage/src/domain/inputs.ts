import { requireTime, resolvePageSize, requireUuidField, validationError, type Plan, type PlanCatalog } from "@tally/platform";
import type { Subject, Window } from "./types";
import { decodeUsageLogCursor, type UsageLogCursor } from "./usage-log-cursor";

/*
 * The checked inputs of the usage RPCs (INV-7: bad input is a `validation` error naming the
 * field, never a server error). The raw shapes are plain objects, so the proto types stay in
 * grpc/.
 */

/** GetUserStats, checked: `userId` is a lower-case UUID. */
export interface GetUserStatsInput {
  userId: string;
}

/** Checks a GetUserStats request. Throws `validation` (field `user_id`) for a malformed id. */
export function parseGetUserStatsInput(raw: { userId: string }): GetUserStatsInput {
  return { userId: requireUuidField(raw.userId, "user_id") };
}

/** ListUsageLogEntries, checked: whose entries, how many (1..100), and after which entry (null = from the newest). */
export interface ListUsageLogEntriesInput {
  userId: string;
  pageSize: number;
  after: UsageLogCursor | null;
  /** Only entries that occurred at or after it; null: all. */
  occurredSince: Date | null;
}

/**
 * Checks a ListUsageLogEntries request: `userId` a UUID, `pageSize` 0 (means 20) or 1..100
 * (platform PAGE_SIZE_RULE), `pageToken` "" or a token this listing issued for this user,
 * `occurredSince` (optional) a valid time: only entries that occurred at or after it.
 * Throws `validation` naming `user_id`, `page_size` or `page_token`, checked in that order.
 */
export function parseListUsageLogEntriesInput(raw: { userId: string; pageSize: number; pageToken: string; occurredSince?: Date }): ListUsageLogEntriesInput {
  const userId = requireUuidField(raw.userId, "user_id");
  const pageSize = resolvePageSize(raw.pageSize);
  const after = raw.pageToken ? decodeUsageLogCursor(raw.pageToken, userId) : null;
  return { userId, pageSize, after, occurredSince: raw.occurredSince ? requireTime(raw.occurredSince, "occurred_since") : null };
}

/** A Subject as the request carries it (the kind already "user", "guest" or "" for unspecified). */
export interface RawSubject {
  id: string;
  kind: string;
  plan: string;
  periodAnchor?: Date;
}

/** A checked subject and its plan from the catalogue. */
export interface SubjectInput {
  subject: Subject;
  plan: Plan;
}

/** Largest credits amount a reservation takes (int64). */
const INT64_MAX = (1n << 63n) - 1n;

/**
 * Checks a request's subject against `catalog`: id a UUID, kind user or guest, plan one of the
 * catalogue, anchor present. Throws `validation` naming `<field>.id`, `.kind`, `.plan` or
 * `.period_anchor` (an unknown plan lists the known ones in `known_plans`).
 */
export function parseSubject(raw: RawSubject | undefined, catalog: PlanCatalog, field = "subject"): SubjectInput {
  if (!raw) throw validationError(`${field} is required`, { field });
  const id = requireUuidField(raw.id, `${field}.id`);
  if (raw.kind !== "user" && raw.kind !== "guest") throw validationError(`${field}.kind must be user or guest`, { field: `${field}.kind` });
  const plan = catalog.plans[raw.plan];
  if (!plan) {
    throw validationError(`${field}.plan "${raw.plan}" is not a known plan`, { field: `${field}.plan`, known_plans: Object.keys(catalog.plans).sort() });
  }
  const anchor = requireTime(raw.periodAnchor, `${field}.period_anchor`);
  return { subject: { id, kind: raw.kind, plan: plan.name, periodAnchor: anchor }, plan };
}

/**
 * The window [`since`, `before`) of a query over the log: both bounds times in the years 1 to
 * 9999 (platform `requireTime`) and `before` after `since`. Throws `validation` naming
 * `occurred_since` or `occurred_before`.
 */
export function parseTimeWindow(since: Date | undefined, before: Date | undefined): Window {
  const start = requireTime(since, "occurred_since");
  const end = requireTime(before, "occurred_before");
  if (end <= start) throw validationError("occurred_before is required and must be after occurred_since", { field: "occurred_before" });
  return { start, end };
}

/** CheckAndReserve, checked. */
export interface CheckAndReserveInput extends SubjectInput {
  generationId: string;
  /** The job's price in credits (>= 0). */
  credits: bigint;
}

/** Checks a CheckAndReserve request. Throws `validation` naming the subject field, `generation_id` or `credits`. */
export function parseCheckAndReserveInput(
  raw: { subject?: RawSubject; generationId: string; credits: bigint },
  catalog: PlanCatalog,
): CheckAndReserveInput {
  const subject = parseSubject(raw.subject, catalog);
  const generationId = requireUuidField(raw.generationId, "generation_id");
  if (typeof raw.credits !== "bigint" || raw.credits < 0n || raw.credits > INT64_MAX) {
    throw validationError("credits must be a non-negative int64", { field: "credits" });
  }
  return { ...subject, generationId, credits: raw.credits };
}

/** ReleaseReservation, checked. */
export interface ReleaseReservationInput {
  generationId: string;
  /** Why (for logs); may be empty. */
  reason: string;
}

/** Checks a ReleaseReservation request. Throws `validation` naming `generation_id` or `reason`. */
export function parseReleaseReservationInput(raw: { generationId: string; reason: string }): ReleaseReservationInput {
  const generationId = requireUuidField(raw.generationId, "generation_id");
  if (raw.reason.length > 200) throw validationError("reason is longer than 200 characters", { field: "reason" });
  return { generationId, reason: raw.reason };
}

/** Checks a ListLimits request. Throws `validation` naming the subject field. */
export function parseListLimitsInput(raw: { subject?: RawSubject }, catalog: PlanCatalog): SubjectInput {
  return parseSubject(raw.subject, catalog);
}

/** AdoptGuest, checked. */
export interface AdoptGuestInput {
  guestId: string;
  user: Subject;
}

/** Checks an AdoptGuest request: `guest_id` a UUID, `user` a user subject other than the guest. Throws `validation` naming the field. */
export function parseAdoptGuestInput(raw: { guestId: string; user?: RawSubject }, catalog: PlanCatalog): AdoptGuestInput {
  const guestId = requireUuidField(raw.guestId, "guest_id");
  const { subject } = parseSubject(raw.user, catalog, "user");
  if (subject.kind !== "user") throw validationError("user.kind must be user", { field: "user.kind" });
  if (subject.id === guestId) throw validationError("a guest cannot adopt itself", { field: "guest_id" });
  return { guestId, user: subject };
}

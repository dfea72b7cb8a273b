import { Readable } from "node:stream";
import { stringify } from "csv-stringify";
import Negotiator from "negotiator";
import { z } from "zod";
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { usage } from "@tally/contracts";
import { principalOf } from "../auth/authenticate";
import type { RouteContext } from "./context";
import { toJsonInteger, toTimestamp } from "./presenters";
import { problemResponses, userOrGuestSecurity } from "./schemas";

/** Most months `GET /v1/usage/history` reaches back, and its default. */
const HISTORY_MONTHS_MAX = 12;
const HISTORY_MONTHS_DEFAULT = 3;
/** Entries per page of the JSON answer (default), and per usage call while streaming CSV. */
const HISTORY_PAGE_SIZE_DEFAULT = 20;
const HISTORY_PAGE_SIZE_MAX = 100;
/** Longest cursor accepted (usage's page tokens are far shorter). */
const CURSOR_LENGTH_MAX = 512;

const historyQuery = z.object({
  months: z.coerce.number().int().min(1).max(HISTORY_MONTHS_MAX).default(HISTORY_MONTHS_DEFAULT).describe("how many UTC months back, this one included"),
  limit: z.coerce.number().int().min(1).max(HISTORY_PAGE_SIZE_MAX).default(HISTORY_PAGE_SIZE_DEFAULT).describe("entries per page (JSON)"),
  cursor: z.string().max(CURSOR_LENGTH_MAX).optional().describe("next_cursor of the previous page"),
});

/** A usage log entry as public JSON. */
export const entrySchema = z.object({
  id: z.string(),
  generation_id: z.string(),
  outcome: z.enum(["completed", "failed"]),
  billable: z.boolean(),
  input_type: z.string(),
  provider: z.string(),
  credits: z.number().int(),
  cost_micros: z.number().int(),
  processing_time_ms: z.number().int(),
  output_bytes: z.number().int(),
  error_message: z.string().nullable(),
  occurred_at: z.string().nullable(),
  plan: z.string().nullable().describe("the plan when the entry was recorded"),
  period_start: z.string().nullable().describe("the billing period the entry counts in"),
  period_end: z.string().nullable(),
  billing_classification: z.string(),
  billing_reason: z.string().nullable(),
  parent_generation_id: z.string().nullable(),
  subject_kind: z.string().nullable(),
});

const historyResponse = z
  .object({ entries: z.array(entrySchema), next_cursor: z.string().nullable().describe("null on the last page") })
  .meta({ id: "UsageHistory" });

type EntryJson = z.infer<typeof entrySchema>;

/** A usage log entry as public JSON (and as a CSV row, in this key order). */
export function presentEntry(entry: usage.UsageLogEntry): EntryJson {
  const orNull = (value: string) => (value === "" ? null : value);
  return {
    id: entry.id,
    generation_id: entry.generationId,
    outcome: entry.outcome === usage.UsageOutcome.USAGE_OUTCOME_COMPLETED ? "completed" : "failed",
    billable: entry.billable,
    input_type: entry.inputType,
    provider: entry.provider,
    credits: toJsonInteger(entry.credits),
    cost_micros: toJsonInteger(entry.costMicros),
    processing_time_ms: toJsonInteger(entry.processingTimeMs),
    output_bytes: toJsonInteger(entry.outputBytes),
    error_message: orNull(entry.errorMessage),
    occurred_at: toTimestamp(entry.occurredAt),
    plan: orNull(entry.plan),
    period_start: toTimestamp(entry.periodStart),
    period_end: toTimestamp(entry.periodEnd),
    billing_classification: entry.billingClassification || "original",
    billing_reason: orNull(entry.billingReason),
    parent_generation_id: orNull(entry.parentGenerationId),
    subject_kind: orNull(entry.subjectKind),
  };
}

const CSV_COLUMNS = Object.keys(entrySchema.shape) as (keyof EntryJson)[];

/**
 * Whether an Accept header asks for CSV rather than JSON, by HTTP content negotiation (the
 * `negotiator` package: quality values, then the more specific type, then the header's order;
 * `q=0` refuses a type). JSON when the header is absent, names neither, or ties them by a
 * wildcard.
 */
export function prefersCsv(accept: string | undefined): boolean {
  if (!accept) return false;
  return new Negotiator({ headers: { accept } }).mediaType(["application/json", "text/csv"]) === "text/csv";
}

/** The first instant of the UTC month `months - 1` months before the one containing `now`. */
export function historyStart(now: Date, months: number): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - (months - 1), 1));
}

/**
 * `GET /v1/usage/history?months=1..12&limit&cursor`: the caller's usage log entries of the last
 * `months` UTC months (default 3, this one included), newest first, as pages with an opaque
 * `next_cursor` (usage's keyset page token, bound to the caller); with `Accept: text/csv` every
 * entry of those months streamed as CSV (a header row, then one row per entry, paged from
 * usage 100 at a time so memory stays flat). Users and guests, their own entries only (INV-7).
 * Errors: 400 `validation` (months, limit, or a cursor that is not this caller's); 401; 503.
 */
export function usageHistoryRoute(app: FastifyInstance, context: RouteContext): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { callFor, clients } = context;
  routes.get(
    "/v1/usage/history",
    {
      onRequest: context.hooks.userOrGuest,
      schema: {
        tags: ["usage"],
        summary: "The usage log entries of the last months (JSON pages, or CSV with Accept: text/csv)",
        security: userOrGuestSecurity,
        querystring: historyQuery,
        response: { 200: historyResponse, ...problemResponses },
      },
    },
    async (request, reply) => {
      const { accountId } = principalOf(request);
      const call = callFor(request);
      const occurredSince = historyStart(new Date(), request.query.months);
      const page = (pageSize: number, pageToken: string) =>
        call(clients.usage.listUsageLogEntries.bind(clients.usage), { userId: accountId, pageSize, pageToken, occurredSince });
      if (!prefersCsv(request.headers.accept)) {
        const answer = await page(request.query.limit, request.query.cursor ?? "");
        return { entries: answer.entries.map(presentEntry), next_cursor: answer.nextPageToken || null };
      }
      // The first page is read before answering, so a bad cursor or a service down is a problem, not a broken stream.
      const first = await page(HISTORY_PAGE_SIZE_MAX, request.query.cursor ?? "");
      async function* rows() {
        let current = first;
        for (;;) {
          for (const entry of current.entries) yield presentEntry(entry);
          if (!current.nextPageToken) return;
          current = await page(HISTORY_PAGE_SIZE_MAX, current.nextPageToken);
        }
      }
      const csv = Readable.from(rows()).pipe(stringify({ header: true, columns: CSV_COLUMNS, cast: { boolean: (value) => String(value) } }));
      // A stream is sent as it is (the response schema describes the JSON answer only).
      return reply.type("text/csv; charset=utf-8").header("content-disposition", 'attachment; filename="usage-history.csv"').send(csv as never);
    },
  );
}

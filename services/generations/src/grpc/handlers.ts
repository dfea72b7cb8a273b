import type { generations } from "@tally/contracts";
import { streaming, type AsyncService } from "@tally/platform";
import type { GenerationWatchHub } from "../service/generation-watch";
import type { GenerationsService } from "../service/generations";
import { fromCreateGenerationRequest, toProtoGeneration, toProtoWatchResponse } from "./mapping";

/**
 * gRPC handlers of tally.generations.v1.GenerationsService: decode → service → encode. Errors
 * are the service's DomainErrors, mapped to gRPC codes by `bindService` (reasons per RPC are
 * listed in generations.proto and docs/errors.md).
 */
export function generationsHandlers(service: GenerationsService, watchHub: GenerationWatchHub): AsyncService<generations.GenerationsServiceServer> {
  return {
    /**
     * Reserves quota at usage, holds the credits and stores the job pending (INV-3, INV-4).
     * Errors: validation, not_found, plan_limit_exceeded / guest_limit_exceeded (usage's
     * details unchanged), insufficient_credits, idempotency_key_reused, unavailable.
     */
    async createGeneration(request) {
      return { generation: toProtoGeneration(await service.create(fromCreateGenerationRequest(request))) };
    },
    /** One generation of the user (INV-7). Errors: not_found. */
    async getGeneration(request) {
      return { generation: toProtoGeneration(await service.get({ userId: request.userId, generationId: request.generationId })) };
    },
    /** The user's generations, newest first, with the total. Errors: validation (limit/offset). */
    async listGenerations(request) {
      const page = await service.list({ userId: request.userId, limit: request.limit, offset: request.offset });
      return { generations: page.generations.map(toProtoGeneration), totalSize: page.totalSize };
    },
    /** Cancels a pending/processing generation, releases its hold and announces the cancel (INV-3, INV-4, INV-5). Errors: validation, not_found, already_finished. */
    async cancelGeneration(request) {
      const cancelled = await service.cancel({ requestId: request.requestId, userId: request.userId, generationId: request.generationId });
      return { generation: toProtoGeneration(cancelled) };
    },
    /** The output bytes of a completed generation of the user (INV-7). Errors: not_found. */
    async getGenerationOutput(request) {
      const output = await service.output({ userId: request.userId, generationId: request.generationId });
      return { content: Buffer.from(output.content), contentType: output.contentType };
    },
    /**
     * Records one download of a completed generation: a GenerationDownloaded event through the
     * outbox, once per request_id (INV-4, INV-5). Errors: validation (request_id), not_found.
     */
    async recordDownload(request) {
      return await service.recordDownload({ requestId: request.requestId, userId: request.userId, generationId: request.generationId });
    },
    /**
     * Starts a new generation from a failed or completed one of the user, classified
     * `free_retry` or `paid_regeneration` and linked to it (INV-3, INV-4, INV-10). Errors:
     * validation, not_found, generation_not_retryable, plan_limit_exceeded /
     * guest_limit_exceeded, insufficient_credits, idempotency_key_reused, unavailable.
     */
    async retryGeneration(request) {
      const retry = await service.retry({ requestId: request.requestId, userId: request.userId, generationId: request.generationId });
      return { generation: toProtoGeneration(retry) };
    },
    /** Moves an adopted guest's generations to the user; `moved` is 0 on a retry. Errors: validation (malformed or equal ids). */
    async adoptGuestGenerations(request) {
      return { moved: await service.adoptGuest({ guestId: request.guestId, userId: request.userId }) };
    },
    /**
     * Streams the user's generation's changes of status and progress with seq > after_seq,
     * in order, until it ends (INV-7, INV-12); headers go out once it is found. Errors:
     * not_found, validation (after_seq < 0), unavailable (WATCH_MAX_STREAMS, stopping).
     */
    watchGeneration: streaming(async (request, stream) => {
      const sink = { accept: () => stream.accept(), write: (change: Parameters<typeof toProtoWatchResponse>[0]) => stream.write(toProtoWatchResponse(change)), signal: stream.signal };
      await watchHub.watch({ userId: request.userId, generationId: request.generationId, afterSeq: request.afterSeq }, sink);
    }),
  };
}

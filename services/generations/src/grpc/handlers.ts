import type { generations } from "@tally/contracts";
import type { AsyncService } from "@tally/platform";
import type { GenerationsService } from "../service/generations";
import { fromCreateGenerationRequest, toProtoGeneration } from "./mapping";

/**
 * gRPC handlers of tally.generations.v1.GenerationsService: decode → service → encode. Errors
 * are the service's DomainErrors, mapped to gRPC codes by `bindService` (reasons per RPC are
 * listed in generations.proto and docs/errors.md).
 */
export function generationsHandlers(service: GenerationsService): AsyncService<generations.GenerationsServiceServer> {
  return {
    /** Holds the credits and stores the job pending (INV-3, INV-4). Errors: validation, insufficient_credits, idempotency_key_reused, unavailable. */
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
    /** Cancels a pending/processing generation and releases its hold (INV-3, INV-4). Errors: validation, not_found, already_finished. */
    async cancelGeneration(request) {
      const cancelled = await service.cancel({ requestId: request.requestId, userId: request.userId, generationId: request.generationId });
      return { generation: toProtoGeneration(cancelled) };
    },
    /** The output bytes of a completed generation of the user (INV-7). Errors: not_found. */
    async getGenerationOutput(request) {
      const output = await service.output({ userId: request.userId, generationId: request.generationId });
      return { content: Buffer.from(output.content), contentType: output.contentType };
    },
  };
}

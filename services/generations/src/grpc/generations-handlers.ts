import { generations } from "@tally/contracts";
import type { AsyncService } from "@tally/platform";
import type { GenerationsService } from "../service/generations-service";

/**
 * The ts-proto server interface without grpc-js' `UntypedServiceImplementation` index
 * signature, which would otherwise turn every method of AsyncService<...> into `never`.
 */
export type GenerationsServer = {
  [K in keyof generations.GenerationsServiceServer as string extends K ? never : K]: generations.GenerationsServiceServer[K];
};

/**
 * gRPC handlers of tally.generations.v1.GenerationsService: decode → service → encode. Errors
 * are the service's DomainErrors, mapped to gRPC codes by `bindService` (reasons per RPC are
 * listed in generations.proto).
 */
export function generationsHandlers(service: GenerationsService): AsyncService<GenerationsServer> {
  return {
    /** Holds the credits and stores the job pending. Errors: validation, insufficient_credits, idempotency_key_reused, unavailable. */
    async createGeneration(request) {
      return { generation: await service.createGeneration(request) };
    },
    /** One generation of the user. Errors: not_found. */
    async getGeneration(request) {
      return { generation: await service.getGeneration(request.userId, request.generationId) };
    },
    /** The user's generations, newest first, with the total. Errors: validation (limit/offset). */
    async listGenerations(request) {
      return service.listGenerations(request.userId, request.limit, request.offset);
    },
    /** Cancels a pending/processing generation and releases its hold. Errors: not_found, already_finished. */
    async cancelGeneration(request) {
      return { generation: await service.cancelGeneration(request) };
    },
    /** The output bytes of a completed generation of the user. Errors: not_found. */
    async getGenerationOutput(request) {
      return service.getGenerationOutput(request.userId, request.generationId);
    },
  };
}

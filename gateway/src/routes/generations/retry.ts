import { principalOf } from "../../auth/authenticate";
import { requestIdFor } from "../context";
import { presentGeneration } from "../presenters";
import { generationSchema, idempotencyHeaders, idParams, problemResponses } from "../schemas";
import { generationIdFrom, outputUrlBuilder, security, type GenerationRouteDeps, type ZodRoutes } from "./shared";

/**
 * `POST /v1/generations/:id/retry`: starts a new generation from the caller's failed or
 * completed generation, with the same input (generations `RetryGeneration`), through the same
 * steps as `POST /v1/generations` (limits and quota, a hold unless free, the worker). 201 the
 * new Generation with `parent_generation_id`, `billing_classification` (`free_retry` for a
 * failed job while the plan's free_retries per job last, else `paid_regeneration`) and
 * `billing_reason`; 404 when missing, another's or not a UUID (INV-7); 409
 * `generation_not_retryable` (pending, processing or cancelled) or `idempotency_key_reused`;
 * then as create: 402, 403 `plan_limit_exceeded`, 429 `guest_limit_exceeded`. Idempotent with
 * `Idempotency-Key`, scoped like create's by the caller (INV-4).
 */
export function retryGenerationRoute(routes: ZodRoutes, { context, onRequest }: GenerationRouteDeps): void {
  const generationsClient = context.clients.generations;
  routes.post(
    "/v1/generations/:id/retry",
    {
      onRequest,
      schema: {
        tags: ["generations"],
        summary: "Retry or regenerate a generation",
        security,
        headers: idempotencyHeaders,
        params: idParams,
        response: { 201: generationSchema, ...problemResponses },
      },
    },
    async (request, reply) => {
      const call = context.callFor(request);
      const { accountId } = principalOf(request);
      const generationId = generationIdFrom(request.params);
      const response = await call(generationsClient.retryGeneration.bind(generationsClient), {
        requestId: requestIdFor(request, { accountId }),
        userId: accountId,
        generationId,
      });
      return reply.code(201).send(presentGeneration(response.generation, outputUrlBuilder(request)));
    },
  );
}

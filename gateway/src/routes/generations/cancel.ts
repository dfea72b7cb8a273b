import { principalOf } from "../../auth/authenticate";
import { requestIdFor } from "../context";
import { presentGeneration } from "../presenters";
import { generationSchema, idempotencyHeaders, idParams, problemResponses } from "../schemas";
import { generationIdFrom, outputUrlBuilder, security, type GenerationRouteDeps, type ZodRoutes } from "./shared";

/**
 * `POST /v1/generations/:id/cancel`: cancels a pending or processing generation and releases
 * its hold. 200 generation (`cancelled`); 409 `already_finished` when it already ended; 404
 * when missing, another user's or not a UUID.
 */
export function cancelGenerationRoute(routes: ZodRoutes, { context, onRequest }: GenerationRouteDeps): void {
  const generationsClient = context.clients.generations;
  routes.post(
    "/v1/generations/:id/cancel",
    {
      onRequest,
      schema: {
        tags: ["generations"],
        summary: "Cancel a generation",
        security,
        headers: idempotencyHeaders,
        params: idParams,
        response: { 200: generationSchema, ...problemResponses },
      },
    },
    async (request) => {
      const call = context.callFor(request);
      const { accountId } = principalOf(request);
      const generationId = generationIdFrom(request.params);
      const response = await call(generationsClient.cancelGeneration.bind(generationsClient), {
        requestId: requestIdFor(request, { accountId }),
        userId: accountId,
        generationId,
      });
      return presentGeneration(response.generation, outputUrlBuilder(request));
    },
  );
}

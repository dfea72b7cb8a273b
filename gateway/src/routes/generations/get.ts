import { principalOf } from "../../auth/authenticate";
import { presentGeneration } from "../presenters";
import { generationSchema, idParams, problemResponses } from "../schemas";
import { generationIdFrom, outputUrlBuilder, security, type GenerationRouteDeps, type ZodRoutes } from "./shared";

/** `GET /v1/generations/:id`: one generation; 404 when missing, another user's or not a UUID. */
export function getGenerationRoute(routes: ZodRoutes, { context, onRequest }: GenerationRouteDeps): void {
  const generationsClient = context.clients.generations;
  routes.get(
    "/v1/generations/:id",
    {
      onRequest,
      schema: { tags: ["generations"], summary: "Read a generation", security, params: idParams, response: { 200: generationSchema, ...problemResponses } },
    },
    async (request) => {
      const call = context.callFor(request);
      const { accountId } = principalOf(request);
      const generationId = generationIdFrom(request.params);
      const response = await call(generationsClient.getGeneration.bind(generationsClient), { userId: accountId, generationId });
      return presentGeneration(response.generation, outputUrlBuilder(request));
    },
  );
}

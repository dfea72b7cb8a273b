import { principalOf } from "../../auth/authenticate";
import { presentGeneration } from "../presenters";
import { generationListResponse, listQuery, problemResponses } from "../schemas";
import { outputUrlBuilder, security, type GenerationRouteDeps, type ZodRoutes } from "./shared";

/**
 * `GET /v1/generations?limit&offset`: the user's generations, newest first, as
 * `{items, total, limit, offset}` (limit 1..100, default 20; offset ≥ 0).
 */
export function listGenerationsRoute(routes: ZodRoutes, { context, onRequest }: GenerationRouteDeps): void {
  const generationsClient = context.clients.generations;
  routes.get(
    "/v1/generations",
    {
      onRequest,
      schema: {
        tags: ["generations"],
        summary: "List generations",
        security,
        querystring: listQuery,
        response: { 200: generationListResponse, ...problemResponses },
      },
    },
    async (request) => {
      const call = context.callFor(request);
      const { accountId } = principalOf(request);
      const { limit, offset } = request.query;
      const response = await call(generationsClient.listGenerations.bind(generationsClient), { userId: accountId, limit, offset });
      const outputUrlFor = outputUrlBuilder(request);
      return {
        items: response.generations.map((generation) => presentGeneration(generation, outputUrlFor)),
        total: response.totalSize,
        limit,
        offset,
      };
    },
  );
}

import { principalOf } from "../../auth/authenticate";
import { idParams } from "../schemas";
import { generationIdFrom, security, type GenerationRouteDeps, type ZodRoutes } from "./shared";

/**
 * `GET /v1/generations/:id/output`: the stored output bytes of a completed generation, with
 * their content type. Owner only: another user's, a missing one or one without output is 404.
 */
export function generationOutputRoute(routes: ZodRoutes, { context, onRequest }: GenerationRouteDeps): void {
  const generationsClient = context.clients.generations;
  routes.get(
    "/v1/generations/:id/output",
    {
      onRequest,
      schema: {
        tags: ["generations"],
        summary: "Download a generation's output",
        description: "The output bytes with their media type (e.g. image/png).",
        security,
        params: idParams,
      },
    },
    async (request, reply) => {
      const call = context.callFor(request);
      const { accountId } = principalOf(request);
      const generationId = generationIdFrom(request.params);
      const response = await call(generationsClient.getGenerationOutput.bind(generationsClient), { userId: accountId, generationId });
      return reply
        .header("content-type", response.contentType || "application/octet-stream")
        .header("content-length", response.content.length)
        // A completed generation's output never changes, but it is one user's: private only.
        .header("cache-control", "private, max-age=86400, immutable")
        .header("x-content-type-options", "nosniff")
        .send(Buffer.from(response.content));
    },
  );
}

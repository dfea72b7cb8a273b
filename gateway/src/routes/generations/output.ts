import { principalOf } from "../../auth/authenticate";
import { requestIdFor } from "../context";
import { idempotencyHeaders, idParams } from "../schemas";
import { generationIdFrom, security, type GenerationRouteDeps, type ZodRoutes } from "./shared";

/**
 * `GET /v1/generations/:id/output`: the stored output bytes of a completed generation, with
 * their content type. Owner only: another user's, a missing one or one without output is 404.
 * Each request is a download, counted once (generations `RecordDownload`, a
 * `generation.downloaded` event for usage's stats; not billable): a retry that sends the same
 * `Idempotency-Key` counts once, every other request counts anew. The download is recorded
 * before the bytes are sent; when recording fails the request fails (no uncounted download).
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
        description:
          "The output bytes with their media type (e.g. image/png). Each request counts as one download in the user's stats (`total_downloaded` of GET /v1/me); a retry with the same Idempotency-Key counts once.",
        security,
        params: idParams,
        headers: idempotencyHeaders,
      },
    },
    async (request, reply) => {
      const call = context.callFor(request);
      const { accountId } = principalOf(request);
      const generationId = generationIdFrom(request.params);
      const response = await call(generationsClient.getGenerationOutput.bind(generationsClient), { userId: accountId, generationId });
      const requestId = requestIdFor(request, { accountId });
      await call(generationsClient.recordDownload.bind(generationsClient), { requestId, userId: accountId, generationId });
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

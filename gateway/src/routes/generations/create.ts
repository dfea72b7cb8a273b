import { principalOf } from "../../auth/authenticate";
import { requestIdFor } from "../context";
import { INPUT_TYPE_VALUES, presentGeneration } from "../presenters";
import { createGenerationBody, generationSchema, idempotencyHeaders, problemResponses } from "../schemas";
import { outputUrlBuilder, security, type GenerationRouteDeps, type ZodRoutes } from "./shared";

/**
 * `POST /v1/generations`: starts a generation. The generations service validates it, holds its
 * credit cost and stores it `pending`. 201 generation; 400 `validation` (photo_url required
 * for photo, address for address, prompt for text); 402 `insufficient_credits`; 403
 * `plan_limit_exceeded` (a user over a plan limit) or 429 `guest_limit_exceeded` (a guest),
 * with the limit's details as problem members; 409 `idempotency_key_reused` (the key is
 * scoped by the caller, user or guest, INV-4).
 */
export function createGenerationRoute(routes: ZodRoutes, { context, onRequest }: GenerationRouteDeps): void {
  const generationsClient = context.clients.generations;
  routes.post(
    "/v1/generations",
    {
      onRequest,
      schema: {
        tags: ["generations"],
        summary: "Start a generation",
        security,
        headers: idempotencyHeaders,
        body: createGenerationBody,
        response: { 201: generationSchema, ...problemResponses },
      },
    },
    async (request, reply) => {
      const call = context.callFor(request);
      const { accountId } = principalOf(request);
      const body = request.body;
      const response = await call(generationsClient.createGeneration.bind(generationsClient), {
        requestId: requestIdFor(request, { accountId }),
        userId: accountId,
        inputType: INPUT_TYPE_VALUES[body.input_type],
        prompt: body.prompt ?? "",
        photoUrl: body.photo_url ?? "",
        address: body.address ?? "",
        style: body.style ?? "",
      });
      return reply.code(201).send(presentGeneration(response.generation, outputUrlBuilder(request)));
    },
  );
}

import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { isUuid, notFound } from "@tally/platform";
import { authenticate, principalOf } from "../auth/authenticate";
import { INPUT_TYPE_VALUES, presentGeneration } from "./presenters";
import { requestIdFor, type RouteContext } from "./context";
import {
  createGenerationBody,
  generationListResponse,
  generationSchema,
  idempotencyHeaders,
  idParams,
  listQuery,
  problemResponses,
} from "./schemas";

/** Absolute URL of a generation's output, from the request's protocol and host. */
function outputUrlBuilder(request: FastifyRequest): (id: string) => string {
  return (id) => `${request.protocol}://${request.host}/v1/generations/${id}/output`;
}

/** A path id that cannot name a generation is simply not found (never a 500 or a 400). */
function generationIdFrom(params: { id: string }): string {
  if (!isUuid(params.id)) throw notFound(`generation ${params.id} not found`);
  return params.id.toLowerCase();
}

const security = [{ bearerAuth: [] }];

/** The generation routes of API.md, acting for the signed-in user only. */
export function generationRoutes(context: RouteContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const routes = app.withTypeProvider<ZodTypeProvider>();
    const { callFor, clients } = context;
    const generationsClient = clients.generations;
    const onRequest = authenticate(context.tokens);

    /**
     * Starts a generation: the generations service validates it, holds its credit cost and
     * stores it `pending`. 201 generation; 400 `validation` (photo_url required for photo,
     * address for address, prompt for text); 402 `insufficient_credits`; 403
     * `plan_limit_exceeded`; 409 `idempotency_key_reused`.
     */
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
        const call = callFor(request);
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

    /** The user's generations, newest first: `{items, total, limit, offset}`. */
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
        const call = callFor(request);
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

    /** One generation; 404 when missing or another user's. */
    routes.get(
      "/v1/generations/:id",
      {
        onRequest,
        schema: { tags: ["generations"], summary: "Read a generation", security, params: idParams, response: { 200: generationSchema, ...problemResponses } },
      },
      async (request) => {
        const call = callFor(request);
        const { accountId } = principalOf(request);
        const generationId = generationIdFrom(request.params);
        const response = await call(generationsClient.getGeneration.bind(generationsClient), { userId: accountId, generationId });
        return presentGeneration(response.generation, outputUrlBuilder(request));
      },
    );

    /**
     * Cancels a pending or processing generation and releases its hold: 200 generation
     * (`cancelled`); 409 `already_finished` when it already ended; 404 when missing.
     */
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
        const call = callFor(request);
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

    /**
     * The stored output bytes of a completed generation, with their content type; owner only
     * (another user's, a missing one or one without output: 404).
     */
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
        const call = callFor(request);
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
  };
}

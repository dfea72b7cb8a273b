import type { FastifyRequest } from "fastify";
import { credits, type generations } from "@tally/contracts";
import { principalOf } from "../../auth/authenticate";
import type { RouteContext } from "../context";
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
      const principal = principalOf(request);
      const { accountId } = principal;
      const body = request.body;
      const response = await call(generationsClient.createGeneration.bind(generationsClient), {
        account: principal.kind === "user" ? await callerAccount(context, request, accountId) : undefined,
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

/**
 * The user's account as the live-account check read it from credits in this request (shared
 * through `accountOf`, so no call is made here), for CreateGeneration's `account`: generations
 * then skips its own GetAccount. Undefined when that read failed (generations reads it itself).
 */
async function callerAccount(context: RouteContext, request: FastifyRequest, accountId: string): Promise<generations.CallerAccount | undefined> {
  const account = await context.accountOf(request, accountId).catch(() => undefined);
  if (!account?.currentPeriodStart) return undefined;
  return { id: account.id, guest: account.kind === credits.AccountKind.ACCOUNT_KIND_GUEST, plan: account.plan, currentPeriodStart: account.currentPeriodStart };
}

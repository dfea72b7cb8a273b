import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { credits } from "@tally/contracts";
import { guestIdOf } from "../auth/guest";
import { adoptGuest } from "./adoption";
import type { ZodRoutes } from "./generations/shared";
import { presentAccount } from "./presenters";
import { requestIdFor, type RouteContext } from "./context";
import { credentialsBody, idempotencyAndGuestHeaders, idempotencyHeaders, loginBody, loginResponse, problemResponses, registerResponse } from "./schemas";

/** `POST /v1/auth/register` and `POST /v1/auth/login`. */
export function authRoutes(context: RouteContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const routes = app.withTypeProvider<ZodTypeProvider>();
    registerRoute(routes, context);
    loginRoute(routes, context);
  };
}

function registerRoute(routes: ZodRoutes, context: RouteContext): void {
  const { callFor, clients, tokens } = context;
  /**
   * Creates an account (with its plan's trial credits, in the credits service's one
   * transaction) and signs the user in. 201 `{user, access_token, token_type, expires_in}`;
   * 400 `validation` (also for an `X-Guest-ID` that is not a UUID); 409 `conflict` when the
   * email is taken. With `X-Guest-ID` the new user adopts the guest: its generations and
   * its usage of the current period (`adoptGuest`), and the guest id stops working.
   */
  routes.post(
    "/v1/auth/register",
    {
      schema: {
        tags: ["accounts"],
        summary: "Create an account",
        headers: idempotencyAndGuestHeaders,
        body: credentialsBody,
        response: { 201: registerResponse, ...problemResponses },
      },
    },
    async (request, reply) => {
      const call = callFor(request);
      const guestId = guestIdOf(request);
      const response = await call(clients.credits.createAccount.bind(clients.credits), {
        requestId: requestIdFor(request, { anonymousEmail: request.body.email }),
        email: request.body.email,
        password: request.body.password,
        plan: "",
        adoptGuestId: guestId ?? "",
        role: credits.Role.ROLE_UNSPECIFIED,
      });
      if (guestId !== undefined) await adoptGuest(context, request, guestId, response.account);
      const user = presentAccount(response.account);
      assert(user.email, "credits registered a user without an email");
      const token = await tokens.issue({ accountId: user.id, role: user.role, email: user.email });
      return reply.code(201).send({ user, access_token: token.accessToken, token_type: "Bearer" as const, expires_in: token.expiresIn });
    },
  );
}

function loginRoute(routes: ZodRoutes, context: RouteContext): void {
  const { callFor, clients, tokens } = context;

  /**
   * Signs in: 200 `{access_token, token_type, expires_in}` and `last_login` is set.
   * A wrong password and an unknown email get the same 401 `unauthenticated` (the credits
   * service answers both alike, so the gateway cannot tell them apart either).
   */
  routes.post(
    "/v1/auth/login",
    {
      schema: {
        tags: ["accounts"],
        summary: "Sign in",
        headers: idempotencyHeaders,
        body: loginBody,
        response: { 200: loginResponse, ...problemResponses },
      },
    },
    async (request) => {
      const call = callFor(request);
      const response = await call(clients.credits.authenticate.bind(clients.credits), {
        requestId: requestIdFor(request, { anonymousEmail: request.body.email }),
        email: request.body.email,
        password: request.body.password,
      });
      const account = presentAccount(response.account);
      assert(account.email, "credits signed in a user without an email");
      const token = await tokens.issue({ accountId: account.id, role: account.role, email: account.email });
      return { access_token: token.accessToken, token_type: "Bearer" as const, expires_in: token.expiresIn };
    },
  );
}

import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import { jsonSchemaTransform, jsonSchemaTransformObject, serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import type { credits } from "@tally/contracts";
import { loadPlanCatalog, type Logger } from "@tally/platform/src/stateless";
import { authenticate, authenticateUserOrGuest, requireLiveAccount } from "./auth/authenticate";
import { guestAccounts } from "./auth/guest";
import { AccessTokens } from "./auth/tokens";
import { downstreamCaller, type GatewayClients } from "./clients";
import type { GatewayConfig } from "./config";
import { frameworkErrorHandler, installProblemHandlers, PATH_PARAMETER_LENGTH_MAX } from "./errors/handlers";
import { clientErrorHandler, installTransportProblems } from "./errors/transport";
import { requestsPerMinuteResolver } from "./limits/account-plans";
import { PlanCache } from "./limits/plan-cache";
import { installRateLimits } from "./limits/rate-limits";
import { installMetrics } from "./metrics";
import { installRequestTracing } from "./tracing";
import { accountRoutes } from "./routes/account";
import { adminRoutes } from "./routes/admin";
import { authRoutes } from "./routes/auth";
import type { RouteContext } from "./routes/context";
import { generationRoutes } from "./routes/generations";
import { opsRoutes } from "./routes/ops";
import { presentAccount } from "./routes/presenters";
import { usageRoutes } from "./routes/usage";

/**
 * Builds the REST gateway (not listening yet: `main.ts` calls `listen`, tests use `inject`).
 * `clients` are the gRPC clients of credits, generations and usage; the caller owns them and
 * closes them after `app.close()`.
 */
export async function buildGateway(config: GatewayConfig, clients: GatewayClients, logger: Logger): Promise<FastifyInstance> {
  const typeBaseUri = config.PROBLEM_TYPE_BASE_URI;
  const app = Fastify({
    loggerInstance: logger as unknown as FastifyBaseLogger,
    bodyLimit: config.BODY_LIMIT_BYTES,
    trustProxy: config.TRUST_PROXY,
    requestIdHeader: "x-request-id",
    logController: new QuietRequestLog(),
    // Errors raised before any route or hook runs go through the same mapper (errors/).
    frameworkErrors: frameworkErrorHandler(typeBaseUri, logger),
    clientErrorHandler: clientErrorHandler(typeBaseUri, logger),
    routerOptions: { maxParamLength: PATH_PARAMETER_LENGTH_MAX },
    http: { requireHostHeader: false },
  });
  installTransportProblems(app.server, typeBaseUri);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installProblemHandlers(app, typeBaseUri, logger);

  // Bodyless POSTs (cancel) often still carry `Content-Type: application/json`; Fastify's
  // parser would answer 400 for the empty body, so an empty JSON body means "no body" here.
  const defaultJsonParser = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    if (body === "") done(null, undefined);
    else defaultJsonParser(request, body as string, done);
  });
  // The API speaks JSON only: any other body is 415, not a confusing schema error.
  app.removeContentTypeParser("text/plain");

  installRequestTracing(app);
  const metrics = installMetrics(app);

  await app.register(fastifySwagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Tally API",
        description: "Credits, generations and usage metering. Errors are RFC 9457 application/problem+json with a stable `code`.",
        version: "1.0.0",
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: "http", scheme: "bearer", bearerFormat: "JWT" },
          guestId: { type: "apiKey", in: "header", name: "X-Guest-ID", description: "A guest's self-chosen UUID (no bearer token)" },
        },
      },
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(fastifySwaggerUi, { routePrefix: "/docs" });

  const context = await buildRouteContext(app, config, clients, logger);
  await app.register(opsRoutes(context, metrics));
  await app.register(authRoutes(context));
  await app.register(accountRoutes(context));
  await app.register(generationRoutes(context));
  await app.register(usageRoutes(context));
  await app.register(adminRoutes(context));
  return app;
}

/**
 * Fastify's request log lines, quieter: its two lines per request at `info` ("incoming
 * request", "request completed") were ~10 % of the gateway's CPU under load, and metrics and
 * traces already count every request. A request that errored is still logged at `error`
 * (and every other line Fastify writes is unchanged); `LOG_LEVEL=debug` adds one `request
 * completed` line per request (method, route pattern, status, duration in milliseconds).
 */
class QuietRequestLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error) return super.requestCompleted(error, request, reply);
    const route = request.routeOptions.url ?? "unmatched";
    reply.log.debug({ method: request.method, route, status: reply.statusCode, duration_ms: Math.round(reply.elapsedTime) }, "request completed");
  }
}

/**
 * What the routes share: the downstream caller, tokens, the plan catalogue (PLANS_FILE; a bad
 * file fails the start with PlansConfigError naming the key), the plan cache, the rate limits
 * (installed here, before any route) and the principal hooks (authentication, then the
 * account's requests_per_minute).
 */
async function buildRouteContext(app: FastifyInstance, config: GatewayConfig, clients: GatewayClients, logger: Logger): Promise<RouteContext> {
  const callFor = (request: FastifyRequest) => downstreamCaller(config.DOWNSTREAM_TIMEOUT_MS, request.traceContext);
  const tokens = new AccessTokens({ secret: config.JWT_SECRET, issuer: config.JWT_ISSUER, ttlSeconds: config.ACCESS_TOKEN_TTL_SECONDS });
  const catalog = loadPlanCatalog(config.PLANS_FILE);
  const planCache = new PlanCache(config.PLAN_CACHE_TTL_MS);
  const accountCalls = new WeakMap<FastifyRequest, Map<string, Promise<credits.Account | undefined>>>();
  const accountOf = (request: FastifyRequest, accountId: string) => {
    let calls = accountCalls.get(request);
    if (!calls) accountCalls.set(request, (calls = new Map()));
    let call = calls.get(accountId);
    if (!call) {
      call = callFor(request)(clients.credits.getAccount.bind(clients.credits), { accountId }).then((response) => response.account);
      calls.set(accountId, call);
    }
    return call;
  };
  const loadPlan = async (request: FastifyRequest, accountId: string) => presentAccount(await accountOf(request, accountId)).plan;
  const requestsPerMinuteOf = requestsPerMinuteResolver({ catalog, cache: planCache, loadPlan, logger });
  const rateLimits = await installRateLimits(app, { config, tokens, requestsPerMinuteOf, logger });
  const ensureGuest = guestAccounts(clients, callFor, planCache);
  const liveAccount = requireLiveAccount(loadPlan, (accountId, plan) => planCache.remember(accountId, plan), logger);
  const hooks = {
    user: [authenticate(tokens), liveAccount, rateLimits.accountHook],
    userOrGuest: [authenticateUserOrGuest(tokens, ensureGuest), liveAccount, rateLimits.accountHook],
    userToken: [authenticate(tokens), rateLimits.accountHook],
  };
  return { config, clients, callFor, accountOf, tokens, logger, catalog, planCache, rateLimits, hooks };
}

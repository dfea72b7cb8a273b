import type { FastifyInstance } from "fastify";
import type { Registry } from "prom-client";
import { checkHealth, DOWNSTREAM_SERVICES, type DownstreamService, type HealthState } from "../clients";
import { buildProblem, sendProblem } from "../errors/problem";
import { traceIdOf } from "../tracing";
import type { RouteContext } from "./context";

/** `/healthz`, `/readyz`, `/openapi.json` and `/metrics`. */
export function opsRoutes(context: RouteContext, metrics: Registry) {
  return async (app: FastifyInstance): Promise<void> => {
    /** Liveness: the process answers HTTP. Never depends on another service. */
    app.get("/healthz", { schema: { tags: ["operations"], summary: "Liveness" } }, async () => ({ status: "ok" }));

    /**
     * Readiness: 200 when credits, generations and usage all answer gRPC health SERVING
     * (each within READINESS_TIMEOUT_MS); else 503 problem `unavailable` whose `services`
     * member says which is down.
     */
    app.get("/readyz", { schema: { tags: ["operations"], summary: "Readiness" } }, async (request, reply) => {
      const states = await Promise.all(
        DOWNSTREAM_SERVICES.map(async (name) => [name, await checkHealth(context.clients.health[name], context.config.READINESS_TIMEOUT_MS)] as const),
      );
      const services = Object.fromEntries(states) as Record<DownstreamService, HealthState>;
      const down = states.filter(([, state]) => state !== "SERVING").map(([name]) => name);
      if (down.length === 0) return { status: "ready", services };
      const problem = buildProblem(context.config.PROBLEM_TYPE_BASE_URI, "unavailable", `not serving: ${down.join(", ")}`, { services }, request.url, traceIdOf(request.span));
      return sendProblem(reply, problem);
    });

    /** The OpenAPI 3 document generated from the routes' zod schemas. */
    app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());

    /** Prometheus exposition of the gateway's metrics. */
    app.get("/metrics", { schema: { hide: true } }, async (_request, reply) =>
      reply.header("content-type", metrics.contentType).send(await metrics.metrics()),
    );
  };
}

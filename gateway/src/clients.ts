import * as grpc from "@grpc/grpc-js";
import { context, type Context } from "@opentelemetry/api";
import { service as healthServiceDefinition } from "grpc-health-check";
import { credits, generations, usage } from "@tally/contracts";
import { callUnary, createGrpcClient, type UnaryMethod } from "@tally/platform/src/stateless";

/** The downstream services the gateway fronts. */
export const DOWNSTREAM_SERVICES = ["credits", "generations", "usage"] as const;
export type DownstreamService = (typeof DOWNSTREAM_SERVICES)[number];

/** gRPC clients of the three services, plus health clients for readiness. */
export interface GatewayClients {
  credits: credits.CreditsServiceClient;
  generations: generations.GenerationsServiceClient;
  usage: usage.UsageServiceClient;
  health: Record<DownstreamService, grpc.Client>;
}

export interface DownstreamAddresses {
  creditsAddress: string;
  generationsAddress: string;
  usageAddress: string;
}

const HealthClient = grpc.makeClientConstructor(healthServiceDefinition as grpc.ServiceDefinition, "Health");

/** Creates the clients (channels connect lazily, so this never waits for a service). */
export function createGatewayClients(addresses: DownstreamAddresses): GatewayClients {
  const creditsClient = createGrpcClient(credits.CreditsServiceClient, addresses.creditsAddress);
  const generationsClient = createGrpcClient(generations.GenerationsServiceClient, addresses.generationsAddress);
  const usageClient = createGrpcClient(usage.UsageServiceClient, addresses.usageAddress);
  // Health checks ride the very channel the calls use, so /readyz says what a request would meet.
  const healthOn = (client: grpc.Client, address: string) =>
    new HealthClient(address, grpc.credentials.createInsecure(), { channelOverride: client.getChannel() });
  return {
    credits: creditsClient,
    generations: generationsClient,
    usage: usageClient,
    health: {
      credits: healthOn(creditsClient as unknown as grpc.Client, addresses.creditsAddress),
      generations: healthOn(generationsClient as unknown as grpc.Client, addresses.generationsAddress),
      usage: healthOn(usageClient as unknown as grpc.Client, addresses.usageAddress),
    },
  };
}

/** Closes every channel; in-flight calls fail with CANCELLED. Call after the HTTP server closed. */
export function closeGatewayClients(clients: GatewayClients): void {
  clients.credits.close();
  clients.generations.close();
  clients.usage.close();
  for (const client of Object.values(clients.health)) client.close();
}

/** A unary call with the gateway's downstream deadline: `call(client.method.bind(client), request)`. */
export type DownstreamCall = <Req, Res>(method: UnaryMethod<Req, Res>, request: Req) => Promise<Res>;

/**
 * Binds `callUnary` to the downstream deadline (`DOWNSTREAM_TIMEOUT_MS`: grpc-js has no
 * default deadline, and a hung service must become a 504, not a hung request) and to a trace
 * context (the HTTP request's span), which `callUnary` copies into the call's metadata.
 * Rejects with a DomainError carrying the callee's reason (`unavailable` when it is down).
 */
export function downstreamCaller(timeoutMs: number, traceContext: Context = context.active()): DownstreamCall {
  return (method, request) => context.with(traceContext, () => callUnary(method, request, { timeoutMs }));
}

/** Health status of one service as readiness reports it. */
export type HealthState = "SERVING" | "NOT_SERVING" | "UNREACHABLE";

/** Asks one service's grpc.health.v1 for the overall status (service ""), within `timeoutMs`. */
export function checkHealth(client: grpc.Client, timeoutMs: number): Promise<HealthState> {
  return new Promise((resolve) => {
    (client as unknown as {
      check(request: { service: string }, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response?: { status?: string }) => void): void;
    }).check({ service: "" }, { deadline: Date.now() + timeoutMs }, (error, response) => {
      if (error) resolve("UNREACHABLE");
      else resolve(response?.status === "SERVING" ? "SERVING" : "NOT_SERVING");
    });
  });
}

/**
 * The part of the platform a process with no database and no broker needs (the gateway):
 * config, logging, errors, telemetry, ids, the gRPC client, lifecycle, plans, billing periods
 * and text and paging rules. Importing it loads neither MikroORM, knex, pg nor NATS (the whole
 * `@tally/platform` does, which costs a process about 50 MB of resident memory and a second of
 * start-up it has no use for). `index.ts` re-exports all of it.
 */
export * from "./config";
export * from "./logger";
export * from "./errors";
export * from "./telemetry";
export * from "./otel-sdk";
export * from "./ids";
export * from "./idempotency";
export * from "./grpc-client";
export * from "./lifecycle";
export * from "./timestamps";
export * from "./text";
export * from "./paging";
export * from "./plans";
export * from "./billing-period";

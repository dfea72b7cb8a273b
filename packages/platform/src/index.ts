/** What every Tally service shares: config, logging, telemetry, gRPC, database, NATS, lifecycle. */
export * from "./config";
export * from "./logger";
export * from "./errors";
export * from "./telemetry";
export * from "./ids";
export * from "./grpc-server";
export * from "./grpc-client";
export * from "./db";
export * from "./idempotency";
export * from "./nats";
export * from "./lifecycle";
export * from "./timestamps";
export * from "./process";

/** What every Tally service shares: config, logging, telemetry, gRPC, database, NATS, lifecycle. */
export * from "./stateless";
export * from "./grpc-server";
export * from "./metrics";
export * from "./db";
export * from "./nats";
export * from "./process";
export * from "./database-errors";
export * from "./polling-loop";
export * from "./pg-listener";
export * from "./unit-of-work";
export * from "./outbox";

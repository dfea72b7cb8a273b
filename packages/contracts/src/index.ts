/**
 * Tally's contracts: ts-proto output for @grpc/grpc-js, generated from `proto/` by `npm run gen`
 * (never hand-edited; a test fails when it is stale). int64 fields are `bigint`.
 */
import path from "node:path";

export * as credits from "./gen/tally/credits/v1/credits";
export * as generations from "./gen/tally/generations/v1/generations";
export * as usage from "./gen/tally/usage/v1/usage";
export * as events from "./gen/tally/events/v1/events";

/** Directory holding the `.proto` sources (for gRPC reflection). */
export const PROTO_ROOT = path.resolve(__dirname, "../../../proto");

/** Proto files per service, relative to PROTO_ROOT. */
export const PROTO_FILES = {
  credits: "tally/credits/v1/credits.proto",
  generations: "tally/generations/v1/generations.proto",
  usage: "tally/usage/v1/usage.proto",
  events: "tally/events/v1/events.proto",
} as const;

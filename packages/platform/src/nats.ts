import { connect, nanos, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, RetentionPolicy, StorageType, type StreamConfig } from "@nats-io/jetstream";
import type { Logger } from "./logger";

export type { NatsConnection };

/**
 * Connects to NATS at `url` (comma-separated list allowed) and reconnects forever: a broker
 * restart is an outage to wait out, not a crash. Connection state changes are logged.
 */
export async function connectNats(url: string, name: string, logger: Logger): Promise<NatsConnection> {
  const nc = await connect({
    servers: url.split(",").map((s) => s.trim()),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1_000,
  });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect" || status.type === "reconnect" || status.type === "error") {
        logger.warn({ nats: status.type }, "NATS connection state changed");
      }
    }
  })();
  return nc;
}

export interface StreamOptions {
  name: string;
  subjects: string[];
  /** JetStream de-duplicates publishes by `Nats-Msg-Id` within this window, in milliseconds. */
  duplicateWindowMs: number;
  /** How long messages are kept, in milliseconds (0 = forever). */
  maxAgeMs: number;
}

/**
 * Creates the stream on file storage if it does not exist, or updates its subjects and limits
 * (idempotent; every producer and consumer may call it at start-up).
 */
export async function ensureStream(nc: NatsConnection, options: StreamOptions): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const config: Partial<StreamConfig> & { name: string } = {
    name: options.name,
    subjects: options.subjects,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    duplicate_window: nanos(options.duplicateWindowMs),
    max_age: nanos(options.maxAgeMs),
  };
  try {
    await jsm.streams.info(options.name);
    await jsm.streams.update(options.name, config);
  } catch (error) {
    if (!isNotFound(error)) throw error;
    try {
      await jsm.streams.add(config);
    } catch (addError) {
      // Another replica created it first.
      if (!/already in use|exists/i.test(String(addError))) throw addError;
    }
  }
}

function isNotFound(error: unknown): boolean {
  return /not found/i.test(String((error as Error)?.message ?? error));
}

/** Subject names of generation events under a prefix (e.g. `tally`). */
export const generationSubjects = (prefix: string) => ({
  completed: `${prefix}.generation.completed`,
  failed: `${prefix}.generation.failed`,
  cancelled: `${prefix}.generation.cancelled`,
  downloaded: `${prefix}.generation.downloaded`,
  all: `${prefix}.generation.>`,
});

/** The subjects of account events under `prefix` (credits publishes them, through its outbox). */
export const accountSubjects = (prefix: string) => ({
  deleted: `${prefix}.account.deleted`,
  all: `${prefix}.account.>`,
});

/**
 * The account events stream's name when NATS_ACCOUNT_STREAM is unset: `<PREFIX>_ACCOUNT_EVENTS`
 * (`TALLY_ACCOUNT_EVENTS` for the default prefix), so that producer and consumers agree on it
 * from the subject prefix alone and two prefixes never share (and fight over) one stream.
 */
export const defaultAccountStream = (prefix: string): string => `${prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, "_")}_ACCOUNT_EVENTS`;

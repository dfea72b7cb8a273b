import type { Logger } from "./logger";
import { shutdownTracing } from "./otel-sdk";

export interface Closer {
  name: string;
  close(): Promise<void>;
}

/** Time the whole shutdown may take before the process exits anyway, in milliseconds. */
export const SHUTDOWN_TIMEOUT_MS = 15_000;

/** Longest wait for the last spans to be exported at shutdown (when tracing is on), in milliseconds. */
export const TRACES_FLUSH_TIMEOUT_MS = 5_000;

/**
 * On SIGINT or SIGTERM, closes `closers` in order (stop taking work first, then drain, then
 * close connections), flushes the spans not yet exported (when tracing is on, for at most
 * TRACES_FLUSH_TIMEOUT_MS) and exits; a second signal or the timeout forces the exit.
 */
export function handleShutdown(logger: Logger, closers: Closer[], timeoutMs = SHUTDOWN_TIMEOUT_MS): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, "second signal, exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    const timer = setTimeout(() => {
      logger.error("shutdown timed out, exiting");
      process.exit(1);
    }, timeoutMs);
    timer.unref();
    let failed = false;
    for (const closer of closers) {
      try {
        await closer.close();
      } catch (error) {
        failed = true;
        logger.error({ err: error, closer: closer.name }, "error while shutting down");
      }
    }
    await shutdownTracing(TRACES_FLUSH_TIMEOUT_MS);
    logger.info("stopped");
    process.exit(failed ? 1 : 0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

import type { Logger } from "./logger";

export interface Closer {
  name: string;
  close(): Promise<void>;
}

/** Time the whole shutdown may take before the process exits anyway, in milliseconds. */
export const SHUTDOWN_TIMEOUT_MS = 15_000;

/**
 * On SIGINT or SIGTERM, closes `closers` in order (stop taking work first, then drain, then
 * close connections) and exits; a second signal or the timeout forces the exit.
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
    logger.info("stopped");
    process.exit(failed ? 1 : 0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

import { PgListener, type Logger } from "@tally/platform";
import { parseChangeNotice, type ChangeNotice } from "../domain/watch";

/** The channel the `generations_event_seq` trigger notifies (migration 20261205000003). */
export const GENERATION_EVENTS_CHANNEL = "generation_events";

export interface NotificationListenerOptions {
  /** The generations database. */
  url: string;
  /** First wait before reconnecting after the connection is lost, in milliseconds (doubles up to `reconnectMaxMs`). */
  reconnectInitialMs: number;
  reconnectMaxMs: number;
}

/** What the listener tells: each change, and "connected again" (the gap's notifications are lost). */
export interface NotificationHandlers {
  onChange(notice: ChangeNotice): void;
  onReconnected(): void;
}

/**
 * The one dedicated PostgreSQL connection of a generations process that runs
 * `LISTEN generation_events` and hands every notification to `handlers.onChange`. It is not
 * from the pool (a pooled connection would lose its LISTEN when returned). When the connection
 * fails it reconnects with exponential backoff and then calls `onReconnected`, so the watch
 * hub can re-read what it watches. `start()` resolves once listening (or throws when the
 * first connection fails: the service does not start half-blind).
 */
export class GenerationNotificationListener {
  private readonly listener: PgListener;

  constructor(options: NotificationListenerOptions, handlers: NotificationHandlers, logger: Logger) {
    const onNotification = (payload: string) => {
      const notice = parseChangeNotice(payload);
      if (notice) handlers.onChange(notice);
      else logger.warn({ payload }, "unreadable generation_events notification ignored");
    };
    // `listen()` reports no first `onListening`: each one is a reconnection.
    const onListening = () => {
      logger.info("generation_events listener connected again");
      handlers.onReconnected();
    };
    this.listener = new PgListener({ ...options, channel: GENERATION_EVENTS_CHANNEL }, { onNotification, onListening }, logger);
  }

  /** Resolves once listening; throws when the first connection cannot be made. */
  start(): Promise<void> {
    return this.listener.listen();
  }

  /** Closes the connection and stops reconnecting. */
  stop(): Promise<void> {
    return this.listener.stop();
  }
}

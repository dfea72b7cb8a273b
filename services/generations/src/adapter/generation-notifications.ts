import { Client } from "pg";
import type { Logger } from "@tally/platform";
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
  private client: Client | undefined;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: NotificationListenerOptions,
    private readonly handlers: NotificationHandlers,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  /** Closes the connection and stops reconnecting. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const client = new Client({ connectionString: this.options.url });
    client.on("notification", (message) => {
      if (message.channel !== GENERATION_EVENTS_CHANNEL) return;
      const notice = parseChangeNotice(message.payload ?? "");
      if (notice) this.handlers.onChange(notice);
      else this.logger.warn({ payload: message.payload }, "unreadable generation_events notification ignored");
    });
    client.on("error", (error) => this.lost(client, error));
    client.on("end", () => this.lost(client, new Error("connection ended")));
    try {
      await client.connect();
      await client.query(`LISTEN ${GENERATION_EVENTS_CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    this.client = client;
  }

  private lost(client: Client, error: unknown): void {
    if (this.stopped || this.client !== client) return;
    this.client = undefined;
    client.end().catch(() => undefined);
    this.logger.warn({ err: error }, "generation_events listener lost its connection; reconnecting");
    this.reconnect(this.options.reconnectInitialMs);
  }

  private reconnect(waitMs: number): void {
    this.retryTimer = setTimeout(() => {
      if (this.stopped) return;
      this.connect().then(
        () => {
          if (this.stopped) return void this.client?.end().catch(() => undefined);
          this.logger.info("generation_events listener connected again");
          this.handlers.onReconnected();
        },
        (error: unknown) => {
          this.logger.warn({ err: error, waitMs }, "generation_events listener could not reconnect");
          this.reconnect(Math.min(waitMs * 2, this.options.reconnectMaxMs));
        },
      );
    }, waitMs);
  }
}

import { Client } from "pg";
import type { Logger } from "./logger";

export interface PgListenerOptions {
  /** The database whose notifications are heard. */
  url: string;
  /** The channel (a plain identifier: letters, digits, underscores). */
  channel: string;
  /** First wait before reconnecting after the connection is lost or cannot be made, in milliseconds (doubles up to `reconnectMaxMs`). */
  reconnectInitialMs: number;
  reconnectMaxMs: number;
}

/** What a listener tells: each notification's payload, and "listening (again)" (notifications sent while it was not are lost). */
export interface PgListenerHandlers {
  onNotification(payload: string): void;
  onListening(): void;
}

/** The default backoff of a listener's reconnection, in milliseconds. */
export const PG_LISTENER_RECONNECT_INITIAL_MS = 250;
export const PG_LISTENER_RECONNECT_MAX_MS = 5_000;

/**
 * One dedicated PostgreSQL connection (not from the pool: a pooled connection would lose its
 * LISTEN when handed back) on `LISTEN <channel>`. PostgreSQL delivers a notification at the
 * commit of the transaction that sent it, never for a rolled-back one. When the connection
 * cannot be made or is lost, it reconnects with exponential backoff; every time it listens
 * (first and again) it calls `onListening`, so the caller can catch up on what it may have
 * missed. `start()` never throws: the first connection is retried like any other.
 */
export class PgListener {
  private client: Client | undefined;
  private stopped = true;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: PgListenerOptions,
    private readonly handlers: PgListenerHandlers,
    private readonly logger: Logger,
  ) {
    if (!/^[a-z_][a-z0-9_]*$/.test(options.channel)) throw new RangeError(`not a plain channel name: ${options.channel}`);
  }

  /** Connects and listens in the background (no-op while started). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt(this.options.reconnectInitialMs);
  }

  /**
   * Connects and listens now: resolves once listening, throws when this first connection
   * cannot be made (nothing is retried then, so a service can refuse to start half-blind).
   * Once listening it reconnects like `start()` and calls `onListening` after each reconnection
   * (not after this first one: the caller knows). No-op while started.
   */
  async listen(): Promise<void> {
    if (!this.stopped) return;
    const client = await this.connect();
    this.stopped = false;
    this.client = client;
  }

  /** True while a connection is listening. */
  get listening(): boolean {
    return this.client !== undefined;
  }

  /** Closes the connection and stops reconnecting. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private attempt(waitMs: number): void {
    this.connect().then(
      (client) => {
        if (this.stopped) return void client.end().catch(() => undefined);
        this.client = client;
        this.handlers.onListening();
      },
      (error: unknown) => {
        if (this.stopped) return;
        this.logger.warn({ err: error, channel: this.options.channel, retry_in_ms: waitMs }, "notification listener could not connect; retrying");
        this.retryTimer = setTimeout(() => this.attempt(Math.min(waitMs * 2, this.options.reconnectMaxMs)), waitMs);
      },
    );
  }

  private async connect(): Promise<Client> {
    const client = new Client({ connectionString: this.options.url });
    client.on("notification", (message) => {
      if (message.channel === this.options.channel) this.handlers.onNotification(message.payload ?? "");
    });
    client.on("error", (error) => this.lost(client, error));
    client.on("end", () => this.lost(client, new Error("connection ended")));
    try {
      await client.connect();
      await client.query(`LISTEN ${this.options.channel}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    return client;
  }

  private lost(client: Client, error: unknown): void {
    if (this.stopped || this.client !== client) return;
    this.client = undefined;
    client.end().catch(() => undefined);
    this.logger.warn({ err: error, channel: this.options.channel }, "notification listener lost its connection; reconnecting");
    this.retryTimer = setTimeout(() => this.attempt(this.options.reconnectInitialMs), this.options.reconnectInitialMs);
  }
}

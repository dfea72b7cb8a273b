import { DomainError, notFound, validationError, type Logger } from "@tally/platform";
import type { GenerationsUnitOfWork } from "../domain/ports";
import { parseGenerationRef } from "../domain/inputs";
import { TERMINAL_STATUSES, toGeneration, type GenerationStatusName, type WatchedGeneration } from "../domain/types";
import type { ChangeNotice, WatchedChange } from "../domain/watch";

/**
 * Live progress (WatchGeneration, INV-12): every change of a generation's status or progress
 * bumps its `event_seq` and notifies `generation_events` at commit (a database trigger). One
 * listening connection per process hands each notification to `notify`; the hub fans it out
 * in-process to the watchers of that generation. Nothing polls per watcher: a progress change
 * is forwarded from the notification's payload alone, and a change of status reads the row
 * once for all watchers of that id (so the status event carries the whole generation).
 */

/** A WatchGeneration request, as the handler passes it. */
export interface WatchRequest {
  userId: string;
  generationId: string;
  /** The last seq the caller has seen; 0 for none. */
  afterSeq: bigint;
}

/** Where the hub writes one watcher's changes (the gRPC stream, through bindService). */
export interface WatchSink {
  /** Called once the generation is found and owned, before any change is written. */
  accept(): void;
  /** Resolves when the transport takes more (a slow reader holds its own watcher only). */
  write(change: WatchedChange): Promise<void>;
  /** Aborted when the caller goes away. */
  signal: AbortSignal;
}

const isTerminal = (status: GenerationStatusName) => TERMINAL_STATUSES.includes(status);

/** One open watch: the changes not yet written, and a wake-up for the writer waiting on them. */
class Watcher {
  private readonly queue: WatchedChange[] = [];
  private wake?: () => void;
  closed?: DomainError;

  push(change: WatchedChange): void {
    this.queue.push(change);
    this.wake?.();
  }

  /** Ends the watch with `error` (the hub is stopping). */
  close(error: DomainError): void {
    this.closed = error;
    this.wake?.();
  }

  /** The next change, or undefined once the caller is gone or the watch is closed. */
  async next(signal: AbortSignal): Promise<WatchedChange | undefined> {
    while (this.queue.length === 0) {
      if (signal.aborted || this.closed) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener("abort", done);
          this.wake = undefined;
          resolve();
        };
        this.wake = done;
        signal.addEventListener("abort", done);
      });
    }
    return this.queue.shift();
  }
}

export interface WatchHubOptions {
  /** Most watch streams open at once in this process (WATCH_MAX_STREAMS); beyond, `unavailable`. */
  maxStreams: number;
}

/** The in-process fan-out of generation changes to WatchGeneration streams. */
export class GenerationWatchHub {
  private readonly watchers = new Map<string, Set<Watcher>>();
  /** Per watched id: the status last fanned out (a different one is a change of status) and the chain that keeps its changes in order. */
  private readonly lastStatus = new Map<string, GenerationStatusName>();
  private readonly chains = new Map<string, Promise<void>>();
  private open = 0;
  private stopping = false;

  constructor(
    private readonly uow: GenerationsUnitOfWork,
    private readonly options: WatchHubOptions,
    private readonly logger: Logger,
  ) {}

  /** Watch streams open now (a gauge on /metrics). */
  get openStreams(): number {
    return this.open;
  }

  /**
   * Streams `request`'s generation to `sink` until it ends (see the WatchGeneration RPC):
   * the watcher is registered before the snapshot is read, so no change between the two is
   * lost; then every change with a seq above the last one written, in order; returns after a
   * terminal status or when the caller goes away. Errors: `not_found` (malformed id, missing,
   * another user's), `validation` (after_seq < 0), `unavailable` (WATCH_MAX_STREAMS open, or
   * the hub is stopping).
   */
  async watch(request: WatchRequest, sink: WatchSink): Promise<void> {
    if (request.afterSeq < 0n) throw validationError("after_seq must be >= 0", { field: "after_seq" });
    const ref = parseGenerationRef(request);
    if (!ref) throw notFound(`generation ${request.generationId} not found`);
    if (this.stopping) throw new DomainError("unavailable", "this replica is stopping; watch again");
    if (this.open >= this.options.maxStreams) {
      throw new DomainError("unavailable", `too many watch streams on this replica (WATCH_MAX_STREAMS ${this.options.maxStreams})`, {
        watch_streams_max: this.options.maxStreams,
      });
    }
    const watcher = this.register(ref.generationId);
    try {
      const snapshot = await this.read(ref.generationId);
      if (!snapshot || snapshot.record.userId !== ref.userId) throw notFound(`generation ${request.generationId} not found`);
      sink.accept();
      await this.forward(watcher, snapshotChange(snapshot), request.afterSeq, sink);
    } finally {
      this.unregister(ref.generationId, watcher);
    }
  }

  /** Writes `first`, then the watcher's changes, each with a seq above the last written, until a terminal one. */
  private async forward(watcher: Watcher, first: WatchedChange, afterSeq: bigint, sink: WatchSink): Promise<void> {
    let lastSeq = afterSeq;
    for (let change: WatchedChange | undefined = first; change; change = await watcher.next(sink.signal)) {
      if (change.seq > lastSeq) {
        await sink.write(change);
        lastSeq = change.seq;
      }
      if (isTerminal(change.status)) return;
    }
    if (watcher.closed && !sink.signal.aborted) throw watcher.closed;
  }

  /** A notification from the listening connection: fanned out to the id's watchers, in order per id. */
  notify(notice: ChangeNotice): void {
    if (!this.watchers.has(notice.id)) return;
    this.enqueue(notice.id, async () => {
      const statusChanged = this.lastStatus.get(notice.id) !== notice.status;
      const change = statusChanged ? await this.readChange(notice.id) : notice;
      if (change) this.fanOut(change);
    });
  }

  /**
   * After the listening connection was lost and is back: notifications of the gap are gone, so
   * each watched generation is read once and its state fanned out (watchers drop what they had).
   */
  resync(): void {
    for (const id of this.watchers.keys()) {
      this.enqueue(id, async () => {
        const change = await this.readChange(id);
        if (change) this.fanOut(change);
      });
    }
  }

  /** Ends every open watch with `unavailable` and refuses new ones (the process is stopping). */
  close(): void {
    this.stopping = true;
    const error = new DomainError("unavailable", "this replica is stopping; watch again");
    for (const set of this.watchers.values()) for (const watcher of set) watcher.close(error);
  }

  private fanOut(change: WatchedChange): void {
    this.lastStatus.set(change.id, change.status);
    for (const watcher of this.watchers.get(change.id) ?? []) watcher.push(change);
  }

  private enqueue(id: string, step: () => Promise<void>): void {
    const next = (this.chains.get(id) ?? Promise.resolve())
      .then(step)
      .catch((error: unknown) => this.logger.warn({ err: error, generationId: id }, "generation change not fanned out"));
    this.chains.set(id, next);
    void next.then(() => {
      if (this.chains.get(id) === next) this.chains.delete(id);
    });
  }

  private async readChange(id: string): Promise<WatchedChange | null> {
    const watched = await this.read(id);
    return watched ? snapshotChange(watched) : null;
  }

  private read(id: string): Promise<WatchedGeneration | null> {
    return this.uow.withoutTransaction((stores) => stores.generations.findWatched(id));
  }

  private register(id: string): Watcher {
    const watcher = new Watcher();
    let set = this.watchers.get(id);
    if (!set) this.watchers.set(id, (set = new Set()));
    set.add(watcher);
    this.open += 1;
    return watcher;
  }

  private unregister(id: string, watcher: Watcher): void {
    const set = this.watchers.get(id);
    if (set?.delete(watcher)) this.open -= 1;
    if (set?.size === 0) {
      this.watchers.delete(id);
      this.lastStatus.delete(id);
    }
  }
}

/** A read row as a change: its current seq, status and progress, with the whole generation. */
function snapshotChange(watched: WatchedGeneration): WatchedChange {
  const { record, eventSeq } = watched;
  return { id: record.id, seq: eventSeq, status: record.status, progressPercent: record.progressPercent, generation: toGeneration(record) };
}

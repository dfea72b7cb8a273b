/**
 * The ingest step of bench/usage-scale.ts: events published as the generations relay publishes
 * them, timed into the usage log, with the CPU each process spent per event, and how those
 * figures print.
 */
import { headers as natsHeaders } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type pg from "pg";
import { events } from "@tally/contracts";
import { connectNats, createLogger, generationSubjects, newId } from "@tally/platform";
import { processCpuSeconds, publishEvents, type TransportCost } from "./nats-transport";
import { subjectUuid } from "./usage-scale-sql";

/**
 * Ingest event `i` of a run (as the generations relay publishes it): a completion, or every 12th
 * a failure, of a random seeded subject, occurring now, on `subjects` (`generationSubjects`).
 */
export function ingestEvent(i: number, subjects: ReturnType<typeof generationSubjects>, subjectCount: number) {
  const common = {
    eventId: newId(), occurredAt: new Date(), userId: subjectUuid(Math.floor(Math.random() * subjectCount)), generationId: newId(),
    inputType: i % 3 === 0 ? "photo" : "text", provider: "builtin-renderer", credits: 2n, costMicros: 20_000n, processingTimeMs: 3_000n,
    billingClassification: "", billingReason: "", parentGenerationId: "",
  };
  const h = natsHeaders();
  h.set("traceparent", `00-${newId().replace(/-/g, "")}-${newId().replace(/-/g, "").slice(0, 16)}-01`);
  const [subject, payload] = i % 12 === 11
    ? [subjects.failed, events.GenerationFailed.encode({ ...common, errorMessage: "provider returned 500", errorCode: "provider_error" }).finish()]
    : [subjects.completed, events.GenerationCompleted.encode({ ...common, creditType: "trial", outputBytes: 4_096n, partialOutput: false }).finish()];
  return { subject, payload, msgId: common.eventId, headers: { msgID: common.eventId, headers: h } };
}

/** The ingest step's figures: events/s, and the CPU each process spent per event (microseconds; null where /proc is not there). */
export interface IngestFigures {
  eventsPerSecond: number;
  cpuMicrosPerEvent: { usage: number | null; postgres: number | null; nats: number | null; publisher: number };
}

/** The processes whose CPU the ingest figures count, read at one moment (seconds; null where /proc is not there). */
function cpuNow(servicePid: number | undefined) {
  return {
    usage: servicePid === undefined ? null : processCpuSeconds({ pid: servicePid }),
    postgres: processCpuSeconds("postgres: "),
    nats: processCpuSeconds("nats-server"),
    publisher: process.cpuUsage(),
  };
}

/** A publisher of ingest events on its own NATS connection, keeping the ids it published. */
async function publisher(nats: { url: string; prefix: string }, subjectCount: number) {
  const nc = await connectNats(nats.url, "bench-usage-publisher", createLogger("bench", "warn"));
  const js = jetstream(nc);
  const subjects = generationSubjects(nats.prefix);
  const eventIds: string[] = [];
  const publishAll = (count: number) => publishEvents(js, count, (i) => ingestEvent(i, subjects, subjectCount), (m) => eventIds.push(m.msgId));
  return { nc, jsm: await jetstreamManager(nc), eventIds, publishAll };
}

const countLog = async (db: pg.Client) => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM usage_log")).rows[0]!.n);

/** Waits until the service's durable consumer has nothing left to deliver or to be acked (the service acks after commit). */
async function drained(jsm: Awaited<ReturnType<typeof jetstreamManager>>, nats: { stream: string; consumer: string }, started: number): Promise<void> {
  for (;;) {
    const info = await jsm.consumers.info(nats.stream, nats.consumer);
    if (info.num_pending === 0 && info.num_ack_pending === 0) return;
    if (Date.now() - started > 30 * 60_000) throw new Error("ingest: the consumer did not catch up within 30 minutes");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Checks that every published event is in the inbox and the log grew by as many entries, then answers the figures over the timed span. */
async function figuresOf(db: pg.Client, eventIds: string[], logBefore: number, span: { started: number; ended: number; cpuBefore: ReturnType<typeof cpuNow>; cpuAfter: ReturnType<typeof cpuNow> }): Promise<IngestFigures> {
  const count = eventIds.length;
  const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM processed_events WHERE event_id = ANY ($1::uuid[])", [eventIds]);
  const grown = (await countLog(db)) - logBefore;
  if (Number(rows[0]!.n) !== count || grown !== count) throw new Error(`ingest: ${count} events published, ${rows[0]!.n} in the inbox, the log grew by ${grown}`);
  const { cpuBefore: a, cpuAfter: b } = span;
  const perEvent = (x: number | null, y: number | null) => (x === null || y === null ? null : ((y - x) * 1e6) / count);
  const publisherCpu = process.cpuUsage(a.publisher);
  return {
    eventsPerSecond: count / ((span.ended - span.started) / 1000),
    cpuMicrosPerEvent: {
      usage: perEvent(a.usage, b.usage), postgres: perEvent(a.postgres, b.postgres), nats: perEvent(a.nats, b.nats),
      publisher: (publisherCpu.user + publisherCpu.system) / count,
    },
  };
}

/**
 * Publishes `ingest` events as the generations relay does and answers events/s from the first
 * publish until every one is in the usage log. While timing, it watches the service's durable
 * consumer (JetStream's count of messages not yet delivered or not yet acked; the service acks
 * only after the commit that recorded them), so the benchmark adds no load on PostgreSQL: a
 * `count(*)` of a 10M-row log is a parallel scan of most of a second on these two cores. After
 * the clock stops it checks in the database that every published event is in the inbox and
 * the log grew by as many entries. The CPU per event is each process's CPU time over the timed
 * span (the usage service, every PostgreSQL process on the machine, the NATS server, this publisher) divided by
 * the events: on a machine doing nothing else, where the two cores went.
 */
export async function measureIngest(
  db: pg.Client,
  nats: { url: string; prefix: string; stream: string; consumer: string },
  options: { ingest: number; subjects: number },
  servicePid: number | undefined,
): Promise<IngestFigures> {
  const pub = await publisher(nats, options.subjects);
  try {
    const before = await countLog(db);
    const [started, cpuBefore] = [Date.now(), cpuNow(servicePid)];
    await pub.publishAll(options.ingest);
    await drained(pub.jsm, nats, started);
    const [ended, cpuAfter] = [Date.now(), cpuNow(servicePid)];
    return await figuresOf(db, pub.eventIds, before, { started, ended, cpuBefore, cpuAfter });
  } finally {
    await pub.nc.drain();
  }
}

/**
 * Ingest from a backlog, as when the usage service comes back after being down: `restart`
 * stops the service, calls its argument (which publishes `backlog` events onto the stream while
 * nothing consumes it) and starts the service again, answering its pid. The clock starts when
 * the consumer first has a message delivered (checked every 10 ms), so the service's start-up is
 * not counted, and stops when nothing is left to deliver or to ack. Publishing is over before
 * the clock starts: the figures are the service, PostgreSQL and the NATS server delivering,
 * with the publisher's CPU counted as 0 µs. Checked as `measureIngest` checks.
 */
export async function measureBacklog(
  db: pg.Client,
  nats: { url: string; prefix: string; stream: string; consumer: string },
  options: { backlog: number; subjects: number },
  restart: (whileStopped: () => Promise<void>) => Promise<number | undefined>,
): Promise<IngestFigures> {
  const pub = await publisher(nats, options.subjects);
  try {
    const before = await countLog(db);
    const servicePid = await restart(() => pub.publishAll(options.backlog));
    const waitingSince = Date.now();
    for (;;) {
      const info = await pub.jsm.consumers.info(nats.stream, nats.consumer);
      if (info.num_pending < options.backlog || info.num_ack_pending > 0) break;
      if (Date.now() - waitingSince > 120_000) throw new Error("ingest: the restarted service took no message within 2 minutes");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const [started, cpuBefore] = [Date.now(), cpuNow(servicePid)];
    await drained(pub.jsm, nats, started);
    const [ended, cpuAfter] = [Date.now(), cpuNow(servicePid)];
    const figures = await figuresOf(db, pub.eventIds, before, { started, ended, cpuBefore, cpuAfter });
    // This process only polled the consumer while the clock ran: nothing was published.
    return { ...figures, cpuMicrosPerEvent: { ...figures.cpuMicrosPerEvent, publisher: 0 } };
  } finally {
    await pub.nc.drain();
  }
}

const micros = (value: number | null) => (value === null ? "n/a" : `${value.toFixed(0)} µs`);

/** CPU per ingested event, by process. */
export function cpuLine(c: IngestFigures["cpuMicrosPerEvent"]): string {
  const all = c.usage !== null && c.postgres !== null && c.nats !== null ? c.usage + c.postgres + c.nats + c.publisher : null;
  return `usage ${micros(c.usage)}, PostgreSQL ${micros(c.postgres)}, NATS server ${micros(c.nats)}, publisher ${micros(c.publisher)}, in all ${micros(all)}`;
}

/** The transport's rates and CPU per event. */
export function transportLine(t: TransportCost): string {
  const all = t.natsCpuMicros === null ? null : t.publisherCpuMicros + t.consumerCpuMicros + t.natsCpuMicros;
  return `publish ${t.publishPerSecond.toFixed(0)} events/s, pull + decode + ack ${t.consumePerSecond.toFixed(0)} events/s; CPU per event: publisher ${micros(t.publisherCpuMicros)}, ` +
    `consumer ${micros(t.consumerCpuMicros)}, NATS server ${micros(t.natsCpuMicros)}, in all ${micros(all)}`;
}


/**
 * The transport's own cost in the usage ingest benchmark (bench/usage-scale.ts): the events go
 * through JetStream exactly as in the ingest step (published with the relay's headers, each
 * awaiting its PubAck; pulled 1,000 at a time by a durable consumer, each decoded and acked),
 * with no database and no usage service. It answers the CPU each side spends per event (this
 * process publishing, this process consuming, the NATS server), read from the kernel's
 * per-process counters, so the ingest figure can be set against the share of the machine that
 * is left for recording once moving the events is paid for.
 */
import { readFileSync, readdirSync } from "node:fs";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { events } from "@tally/contracts";
import { connectNats, createLogger, ensureStream, generationSubjects } from "@tally/platform";
import { uniqueSuffix } from "@tally/platform/src/testing";

/**
 * CPU seconds (user + system) of the process `pid`, or of every process whose command line
 * contains `name` (Linux /proc; null elsewhere). A process that ended meanwhile is not counted.
 */
export function processCpuSeconds(name: string | { pid: number }): number | null {
  let ticks = 0;
  try {
    const pids = typeof name === "string" ? readdirSync("/proc").filter((p) => /^\d+$/.test(p)) : [String(name.pid)];
    for (const pid of pids) {
      try {
        if (typeof name === "string" && !readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(name)) continue;
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        ticks += Number(fields[11]) + Number(fields[12]);
      } catch {
        // The process ended meanwhile.
      }
    }
  } catch {
    return null;
  }
  return ticks / 100; // USER_HZ, 100 on Linux
}

/** An event as the ingest step builds it: NATS subject, payload, id and publish options (the relay's headers). */
export type BuiltEvent = { subject: string; payload: Uint8Array; msgId: string; headers: Parameters<ReturnType<typeof jetstream>["publish"]>[2] };

/** Publishes in flight at once. */
const PUBLISH_CONCURRENCY = 500;

/**
 * Publishes events 0..count-1 built by `build` as the generations relay does, PUBLISH_CONCURRENCY
 * at a time, each awaiting its PubAck; `published` sees each built event.
 */
export async function publishEvents(js: ReturnType<typeof jetstream>, count: number, build: (i: number) => BuiltEvent, published: (m: BuiltEvent) => void = () => undefined): Promise<void> {
  for (let i = 0; i < count; i += PUBLISH_CONCURRENCY) {
    await Promise.all(Array.from({ length: Math.min(PUBLISH_CONCURRENCY, count - i) }, (_, j) => {
      const m = build(i + j);
      published(m);
      return js.publish(m.subject, m.payload, m.headers);
    }));
  }
}

/** The transport alone: events/s of each phase and CPU microseconds per event of each side (null where not measurable). */
export interface TransportCost {
  events: number;
  publishPerSecond: number;
  consumePerSecond: number;
  publisherCpuMicros: number;
  consumerCpuMicros: number;
  natsCpuMicros: number | null;
}

/**
 * Publishes `count` events built by `build(i, subjects)` (subject and payload on the stream's
 * generation subjects, as the ingest step builds them) to a throw-away stream, then pulls, decodes and acks them all, timing and metering each
 * phase; the stream is deleted after.
 */
export async function measureTransport(natsUrl: string, count: number, build: (i: number, subjects: ReturnType<typeof generationSubjects>) => BuiltEvent): Promise<TransportCost> {
  const nc = await connectNats(natsUrl, "bench-transport", createLogger("bench", "warn"));
  const suffix = uniqueSuffix();
  const prefix = `benchtransport${suffix}`;
  const stream = `BENCH_TRANSPORT_${suffix.toUpperCase()}`;
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  try {
    const subjects = generationSubjects(prefix);
    await ensureStream(nc, { name: stream, subjects: [subjects.all], duplicateWindowMs: 120_000, maxAgeMs: 3_600_000 });
    await jsm.consumers.add(stream, { durable_name: "floor", ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_ack_pending: 2_000 });
    const nats = () => processCpuSeconds("nats-server");
    const meter = async (work: () => Promise<void>) => {
      const [cpu, natsCpu, started] = [process.cpuUsage(), nats(), Date.now()];
      await work();
      const natsAfter = nats();
      const used = process.cpuUsage(cpu);
      return { seconds: (Date.now() - started) / 1000, cpuMicros: (used.user + used.system) / count, natsMicros: natsCpu === null || natsAfter === null ? null : ((natsAfter - natsCpu) * 1e6) / count };
    };
    const published = await meter(() => publishEvents(js, count, (i) => build(i, subjects)));
    const consumer = await js.consumers.get(stream, "floor");
    const consumed = await meter(async () => {
      const deadline = Date.now() + 10 * 60_000;
      for (let received = 0; received < count; ) {
        if (Date.now() > deadline) throw new Error(`transport: ${received} of ${count} events pulled within 10 minutes`);
        const batch = await consumer.fetch({ max_messages: 1_000, expires: 2_000 });
        for await (const msg of batch) {
          const decoded = msg.subject.endsWith(".failed") ? events.GenerationFailed.decode(msg.data) : events.GenerationCompleted.decode(msg.data);
          if (!decoded.eventId) throw new Error("transport: an event without an id");
          msg.ack();
          received += 1;
        }
      }
    });
    const natsMicros = published.natsMicros === null || consumed.natsMicros === null ? null : published.natsMicros + consumed.natsMicros;
    return {
      events: count,
      publishPerSecond: count / published.seconds,
      consumePerSecond: count / consumed.seconds,
      publisherCpuMicros: published.cpuMicros,
      consumerCpuMicros: consumed.cpuMicros,
      natsCpuMicros: natsMicros,
    };
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.drain();
  }
}

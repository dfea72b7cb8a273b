/**
 * `GET /v1/generations/{id}/events` over real HTTP (the gateway listening) in front of the real
 * credits, usage and generations services (jobs slowed by `[fault:slow_ms=N]`): a slow job's
 * stream (status, rising progress, completed, the end), heartbeats, resuming with
 * Last-Event-ID or `last_event_id`, owner only (another user 404, anonymous 401, a guest
 * owner 200), a bad Last-Event-ID 400, WATCH_MAX_STREAMS reached 503 with Retry-After, and a
 * client that goes away cancelling its watch at generations (its open-streams gauge).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";
import { eventually } from "@tally/platform/src/testing";
import { bearer, startTestGateway, type TestGateway } from "./helpers";
import { RealServices, writePlansFile } from "./real-services";

const PLANS_YAML = [
  "default_plan: free",
  "guest_plan: guest",
  "plans:",
  "  guest: { trial_credits: 50, limits: { generations_per_day: 100, concurrent_generations: 20, requests_per_minute: 100000 } }",
  "  free: { trial_credits: 50, limits: { generations_per_period: 100, concurrent_generations: 20, requests_per_minute: 100000 } }",
].join("\n");
const WATCH_MAX_STREAMS = 4;
const HEARTBEAT_MS = 200;

/** One parsed SSE event. */
interface SseEvent {
  id: string;
  event: string;
  data: Record<string, unknown>;
}

/** An SSE response being read: its head, the events and heartbeats so far, its end. */
interface SseStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  events: SseEvent[];
  heartbeats: number;
  /** The whole body, for error answers (problem+json). */
  text(): string;
  ended: Promise<void>;
  close(): void;
}

const services = new RealServices(writePlansFile(PLANS_YAML));
let gateway: TestGateway;
let base: string;
let generationsMetricsPort: number;

function openSse(path: string, headers: Record<string, string> = {}): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const request = http.get(`${base}${path}`, { headers: { accept: "text/event-stream", ...headers } }, (response) => {
      let buffer = "";
      let all = "";
      const stream: SseStream = {
        status: response.statusCode ?? 0,
        headers: response.headers,
        events: [],
        heartbeats: 0,
        text: () => all,
        ended: new Promise((done) => response.on("close", () => done())),
        close: () => request.destroy(),
      };
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        all += chunk;
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block === ": heartbeat") stream.heartbeats += 1;
          const fields = Object.fromEntries(block.split("\n").filter((line) => !line.startsWith(":")).map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)]));
          if (fields.data) stream.events.push({ id: fields.id ?? "", event: fields.event ?? "message", data: JSON.parse(fields.data) as Record<string, unknown> });
        }
      });
      resolve(stream);
    });
    request.on("error", reject);
  });
}

async function watchStreams(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${generationsMetricsPort}/metrics`)).text();
  return Number(/^generations_watch_streams\{[^}]*\} (\d+)/m.exec(text)?.[1]);
}

const register = async () => {
  const answer = await gateway.app.inject({ method: "POST", url: "/v1/auth/register", payload: { email: `u-${randomUUID()}@example.com`, password: "correct horse battery" } });
  expect(answer.statusCode).toBe(201);
  return bearer(answer.json().access_token as string);
};
const createJob = async (headers: Record<string, string>, slowMs: number) => {
  const answer = await gateway.app.inject({ method: "POST", url: "/v1/generations", headers, payload: { input_type: "text", prompt: `a harbour [fault:slow_ms=${slowMs}]` } });
  expect(answer.statusCode).toBe(201);
  return answer.json().id as string;
};

beforeAll(async () => {
  const [credits, usage] = await Promise.all([services.startCredits(), services.startUsage()]);
  const generations = await services.startGenerations(credits.address, usage.address, {
    FAULT_INJECTION_ENABLED: "true", WATCH_MAX_STREAMS: String(WATCH_MAX_STREAMS), METRICS_PORT: "0", WORKER_CONCURRENCY: "4",
  });
  generationsMetricsPort = generations.metricsPort!;
  gateway = await startTestGateway({
    CREDITS_GRPC_ADDRESS: credits.address, GENERATIONS_GRPC_ADDRESS: generations.address, USAGE_GRPC_ADDRESS: usage.address,
    SSE_HEARTBEAT_MS: String(HEARTBEAT_MS), RATE_LIMIT_ANONYMOUS_PER_MINUTE: "100000",
  });
  await gateway.app.listen({ port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await services.stop();
}, 60_000);

describe("GET /v1/generations/{id}/events", () => {
  it("streams a slow job: its state, rising progress, completed with its output URL, heartbeats, then closes", async () => {
    const user = await register();
    const id = await createJob(user, 1_500);
    const stream = await openSse(`/v1/generations/${id}/events`, user);
    expect(stream.status).toBe(200);
    expect(stream.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    expect(stream.headers["cache-control"]).toContain("no-cache");
    await stream.ended;
    const { events } = stream;
    const ids = events.map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);
    expect(events[0]).toMatchObject({ event: "status", data: { id } });
    const progress = events.filter((e) => e.event === "progress").map((e) => e.data.progress as number);
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(events.filter((e) => e.event === "progress").every((e) => e.data.status === "processing" && e.data.id === id)).toBe(true);
    expect(events.at(-1)).toMatchObject({ event: "status", data: { id, status: "completed", progress: 100, output_url: expect.stringContaining(`/v1/generations/${id}/output`) } });
    expect(stream.heartbeats).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it("resumes after Last-Event-ID (or last_event_id) with only the later events, and refuses a malformed one", async () => {
    const user = await register();
    const id = await createJob(user, 1_000);
    const first = await openSse(`/v1/generations/${id}/events`, user);
    await first.ended;
    const middle = first.events[Math.floor(first.events.length / 2)]!.id;
    const last = first.events.at(-1)!.id;
    for (const resumed of [await openSse(`/v1/generations/${id}/events`, { ...user, "last-event-id": middle }), await openSse(`/v1/generations/${id}/events?last_event_id=${middle}`, user)]) {
      expect(resumed.status).toBe(200);
      await resumed.ended;
      expect(resumed.events.map((e) => e.id)).toEqual([last]);
      expect(resumed.events[0]).toMatchObject({ event: "status", data: { status: "completed" } });
    }
    const caughtUp = await openSse(`/v1/generations/${id}/events`, { ...user, "last-event-id": last });
    await caughtUp.ended;
    expect([caughtUp.status, caughtUp.events]).toEqual([200, []]);
    for (const bad of ["abc", "-1", "1.5", "99999999999999999999"]) {
      const refused = await openSse(`/v1/generations/${id}/events`, { ...user, "last-event-id": bad });
      await refused.ended;
      expect([bad, refused.status, refused.headers["content-type"]]).toEqual([bad, 400, "application/problem+json; charset=utf-8"]);
      expect(JSON.parse(refused.text())).toMatchObject({ code: "validation" });
    }
  }, 30_000);

  it("is its owner's only: another user 404, anonymous 401, a guest owner streams its own job", async () => {
    const owner = await register();
    const id = await createJob(owner, 10);
    const other = await openSse(`/v1/generations/${id}/events`, await register());
    await other.ended;
    expect([other.status, JSON.parse(other.text()).code]).toEqual([404, "not_found"]);
    const anonymous = await openSse(`/v1/generations/${id}/events`);
    await anonymous.ended;
    expect([anonymous.status, JSON.parse(anonymous.text()).code]).toEqual([401, "unauthenticated"]);
    const missing = await openSse(`/v1/generations/${randomUUID()}/events`, owner);
    await missing.ended;
    expect(missing.status).toBe(404);

    const guest = { "x-guest-id": randomUUID() };
    const guestJob = await createJob(guest, 500);
    const guestStream = await openSse(`/v1/generations/${guestJob}/events`, guest);
    expect(guestStream.status).toBe(200);
    await guestStream.ended;
    expect(guestStream.events.at(-1)).toMatchObject({ event: "status", data: { id: guestJob, status: "completed" } });
  }, 30_000);

  it("answers 503 with Retry-After beyond WATCH_MAX_STREAMS, and a client going away ends its watch at generations", async () => {
    const user = await register();
    const id = await createJob(user, 20_000);
    const open = await Promise.all(Array.from({ length: WATCH_MAX_STREAMS }, () => openSse(`/v1/generations/${id}/events`, user)));
    expect(open.map((s) => s.status)).toEqual(open.map(() => 200));
    await eventually(async () => ((await watchStreams()) === WATCH_MAX_STREAMS ? true : undefined), 10_000);
    const refused = await openSse(`/v1/generations/${id}/events`, user);
    await refused.ended;
    expect([refused.status, JSON.parse(refused.text()).code]).toEqual([503, "unavailable"]);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);

    for (const stream of open.slice(0, 2)) stream.close();
    await eventually(async () => ((await watchStreams()) === WATCH_MAX_STREAMS - 2 ? true : undefined), 10_000);
    const cancelled = await gateway.app.inject({ method: "POST", url: `/v1/generations/${id}/cancel`, headers: user });
    expect(cancelled.statusCode).toBe(200);
    for (const stream of open.slice(2)) {
      await stream.ended;
      expect(stream.events.at(-1)).toMatchObject({ event: "status", data: { status: "cancelled" } });
    }
    await eventually(async () => ((await watchStreams()) === 0 ? true : undefined), 10_000);
  }, 40_000);

  // Last: it closes the gateway.
  it("ends its open streams when the gateway closes, so they never hold the close", async () => {
    const user = await register();
    const id = await createJob(user, 20_000);
    const stream = await openSse(`/v1/generations/${id}/events`, user);
    expect(stream.status).toBe(200);
    const closing = Date.now();
    await gateway.close();
    gateway = undefined as unknown as TestGateway;
    await stream.ended;
    expect(Date.now() - closing).toBeLessThan(5_000);
    await eventually(async () => ((await watchStreams()) === 0 ? true : undefined), 10_000);
  }, 30_000);
});

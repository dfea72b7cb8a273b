/**
 * The fault run's load: virtual clients (signed-up users and guests) that loop through the
 * gateway: create a generation (some carry the fault marker, so they fail), sometimes cancel
 * it, and download the outputs of earlier ones that completed. Every create and cancel carries
 * an `Idempotency-Key` and is retried with the SAME key on a network error or a 5xx (503 and
 * 504 included) until it gets a definite answer, so a create accepted just before a crash is
 * never made twice (INV-4). Every accepted generation id is recorded.
 */
import { randomUUID } from "node:crypto";

/** The prompt marker that makes the provider fail a job (generations' FAULT_INJECTION_ENABLED). */
export const FAULT_MARKER = "[fault:provider_error]";
/** One HTTP attempt's deadline, in milliseconds. */
const ATTEMPT_TIMEOUT_MS = 15_000;
/** How long one logical request is retried before it is given up (counted as abandoned), in milliseconds. */
const RETRY_BUDGET_MS = 120_000;

/** A seeded pseudo-random generator (mulberry32), so a failing run can be replayed with its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** What the load did: attempts by kind and status class, and the generations it got accepted. */
export class LoadRecord {
  /** `<kind> <class>` → attempts, e.g. `create 2xx`, `create network`. */
  readonly requests = new Map<string, number>();
  /** Accepted generation id → the client (subject) that made it. */
  readonly accepted = new Map<string, string>();
  readonly cancelled = new Set<string>();
  /** Logical requests that got no definite answer within the retry budget. */
  abandoned = 0;
  downloads = 0;
  /** Answers that broke the contract (e.g. a create retried with its key answering another id). */
  readonly anomalies: string[] = [];

  count(kind: string, status: number | "network"): void {
    const label = `${kind} ${status === "network" ? "network" : `${Math.floor(status / 100)}xx`}`;
    this.requests.set(label, (this.requests.get(label) ?? 0) + 1);
  }

  total(): number {
    let sum = 0;
    for (const n of this.requests.values()) sum += n;
    return sum;
  }
}

interface Caller {
  token?: string;
  guestId?: string;
  name: string;
}

interface Answer {
  status: number;
  body: any;
}

/** The gateway's base URL; changes never (the gateway restarts on its port). */
export interface LoadOptions {
  base: string;
  record: LoadRecord;
  random: () => number;
  /** True while the load should go on. */
  running: () => boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function attempt(base: string, method: string, route: string, caller: Caller, key: string | undefined, body?: unknown): Promise<Answer> {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: {
      ...(caller.token ? { authorization: `Bearer ${caller.token}` } : {}),
      ...(caller.guestId ? { "x-guest-id": caller.guestId } : {}),
      ...(key ? { "idempotency-key": key } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
  });
  const isJson = response.headers.get("content-type")?.includes("json");
  const payload = isJson ? await response.json().catch(() => undefined) : Buffer.from(await response.arrayBuffer());
  return { status: response.status, body: payload };
}

/**
 * One logical request, retried with the same `Idempotency-Key` on a network error or a 5xx
 * (and on 429, after a pause) until a definite answer; undefined when the budget ran out.
 */
export async function request(options: LoadOptions, kind: string, method: string, route: string, caller: Caller, body?: unknown, retry = true): Promise<Answer | undefined> {
  const key = method === "GET" && kind !== "download" ? undefined : randomUUID();
  const deadline = Date.now() + RETRY_BUDGET_MS;
  for (let pause = 100; ; pause = Math.min(pause * 2, 2_000)) {
    let answer: Answer | undefined;
    try {
      answer = await attempt(options.base, method, route, caller, key, body);
      options.record.count(kind, answer.status);
    } catch {
      options.record.count(kind, "network");
    }
    if (answer && answer.status < 500 && answer.status !== 429) return answer;
    if (!retry || Date.now() > deadline) {
      if (retry) options.record.abandoned++;
      return undefined;
    }
    await sleep(pause);
  }
}

/** Registers a user (retrying with its key) and returns its caller; throws when it cannot. */
export async function signUp(options: LoadOptions, email: string): Promise<Caller> {
  const answer = await request(options, "register", "POST", "/v1/auth/register", { name: email }, { email, password: "correct horse battery" });
  if (answer?.status !== 201) throw new Error(`register ${email}: ${answer?.status} ${JSON.stringify(answer?.body)}`);
  return { token: answer.body.access_token, name: answer.body.user.id };
}

/** A guest caller with a fresh id (its account is made by its first request). */
export const guest = (): Caller => ({ guestId: randomUUID(), name: "" });

/** One client's loop until `running()` is false. */
export async function runClient(options: LoadOptions, caller: Caller, index: number): Promise<void> {
  const mine: string[] = [];
  const { record, random } = options;
  for (let i = 0; options.running(); i++) {
    const failing = random() < 0.2;
    const prompt = `chaos client ${index} job ${i}${failing ? ` ${FAULT_MARKER}` : ""}`;
    const created = await request(options, "create", "POST", "/v1/generations", caller, { input_type: "text", prompt });
    if (created?.status === 201) {
      const id = created.body.id as string;
      if (record.accepted.has(id)) record.anomalies.push(`create answered ${id} twice (client ${index})`);
      record.accepted.set(id, created.body.user_id ?? caller.name);
      mine.push(id);
      if (random() < 0.15) await cancel(options, caller, id);
    } else if (created && created.status >= 400) {
      await sleep(500);
    }
    if (mine.length > 0 && random() < 0.5) await download(options, caller, mine[Math.floor(random() * mine.length)]!);
    await sleep(50 + Math.floor(random() * 200));
  }
}

async function cancel(options: LoadOptions, caller: Caller, id: string): Promise<void> {
  const answer = await request(options, "cancel", "POST", `/v1/generations/${id}/cancel`, caller);
  if (answer?.status === 200) options.record.cancelled.add(id);
}

async function download(options: LoadOptions, caller: Caller, id: string): Promise<void> {
  const status = await request(options, "status", "GET", `/v1/generations/${id}`, caller, undefined, false);
  if (status?.status !== 200 || status.body.status !== "completed") return;
  const output = await request(options, "download", "GET", `/v1/generations/${id}/output`, caller, undefined, false);
  if (output?.status === 200) options.record.downloads++;
}

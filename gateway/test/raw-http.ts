/**
 * HTTP/1.1 over a raw `net` socket, for tests that must pass through Node's HTTP parser
 * (Fastify's `inject` bypasses it), and a seeded generator of malformed request parts.
 */
import net from "node:net";

export interface RawAnswer {
  status: number;
  /** Header names lower-cased; the last value wins. */
  headers: Record<string, string>;
  body: string;
}

/** Parses one HTTP/1.1 response (the server closes the connection after it). */
export function parseAnswer(raw: Buffer): RawAnswer {
  const text = raw.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`no complete response head in ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine, ...headerLines] = text.slice(0, end).split("\r\n");
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine!)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const bodyBytes = raw.subarray(Buffer.byteLength(text.slice(0, end + 4), "latin1"));
  const length = headers["content-length"] === undefined ? bodyBytes.length : Number(headers["content-length"]);
  return { status, headers, body: bodyBytes.subarray(0, length).toString("utf8") };
}

/**
 * Sends `request` (a latin1 string: one character per byte) on a new connection and returns
 * the answer the server wrote before closing. Write errors (the server may close while a huge
 * request is still being sent) are ignored: the answer already received is what counts.
 */
export function sendRaw(port: number, request: string, timeoutMs = 3_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, "127.0.0.1", () => socket.write(Buffer.from(request, "latin1")));
    const timer = setTimeout(() => socket.destroy(new Error("no answer in time")), timeoutMs);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      try {
        resolve(parseAnswer(Buffer.concat(chunks)));
      } catch (error) {
        reject(error);
      }
    });
  });
}

/** mulberry32: a small deterministic generator, so a failing case can be replayed exactly. */
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

/** UTF-8 bytes of `text` as a latin1 string (what goes on the wire for raw unicode). */
export const utf8Bytes = (text: string): string => Buffer.from(text, "utf8").toString("latin1");

type Random = () => number;
const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const between = (random: Random, low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
const repeat = (random: Random, count: number, part: () => string): string => Array.from({ length: count }, part).join("");

const PERCENT_GARBAGE = ["%", "%Z", "%ZZ", "%G1", "%E0%A4%A", "%C3%28", "%ff", "%C0%AF", "%ED%A0%80", "%%", "%2", "%u2603"];
const PATH_PREFIXES = ["/v1/generations/", "/v1/", "/v1/generations/", "/v1/me/", "/v1/auth/"];
const UNICODE = ["é", "☃", "𝄞", "中文", "\u202e", "\ufeff", "ß"];

/** Fuzzed request targets, each under /v1/ (so none is a public route answering 2xx). */
export function fuzzPaths(random: Random, count: number): string[] {
  const kinds: (() => string)[] = [
    () => pick(random, PATH_PREFIXES) + repeat(random, between(random, 1, 6), () => pick(random, PERCENT_GARBAGE) + "x"),
    () => `/v1/generations/${"a".repeat(between(random, 101, 6_000))}`,
    () => `/v1/${"segment/".repeat(between(random, 10, 1_500))}`,
    () => `/v1/generations?limit=${"9".repeat(between(random, 10, 3_000))}`,
    () => pick(random, PATH_PREFIXES) + utf8Bytes(repeat(random, between(random, 1, 50), () => pick(random, UNICODE))),
    () => pick(random, PATH_PREFIXES) + encodeURIComponent(repeat(random, between(random, 1, 50), () => pick(random, UNICODE))),
    () => pick(random, ["/v1/generations/../../etc/passwd", "/v1/../v1/me", "/v1/generations/%2e%2e%2f%2e%2e%2f", "/v1/generations/..\\..\\", "/v1//generations//"]),
    () => pick(random, PATH_PREFIXES) + pick(random, ["%00", "x%00y", "%00/cancel", "%00%00%00", "\u0000"]),
    () => pick(random, PATH_PREFIXES) + String.fromCharCode(between(random, 0, 31)) + "x",
    () => `/v1/generations/${pick(random, PERCENT_GARBAGE)}/${pick(random, ["cancel", "output", ""])}`,
  ];
  return Array.from({ length: count }, () => pick(random, kinds)());
}

const HEADER_NAMES = ["idempotency-key", "authorization", "x-request-id", "accept", "x-fuzz", "traceparent", "user-agent", "cookie"];

/** A header value: printable noise with control characters, DEL or high bytes mixed in, short or very long. */
function fuzzValue(random: Random): string {
  const length = pick(random, [1, 8, 200, 1_000, 9_000, 17_000, 40_000]);
  return repeat(random, length, () => {
    const roll = random();
    if (roll < 0.05) return String.fromCharCode(between(random, 0, 31));
    if (roll < 0.07) return "\u007f";
    if (roll < 0.09) return String.fromCharCode(between(random, 0x80, 0xff));
    return String.fromCharCode(between(random, 0x21, 0x7e));
  });
}

/** Fuzzed header blocks (each line ends in CRLF): control characters, over-long values, many headers, bad names. */
export function fuzzHeaders(random: Random, count: number): string[] {
  const kinds: (() => string)[] = [
    () => `${pick(random, HEADER_NAMES)}: ${fuzzValue(random)}\r\n`,
    () => repeat(random, between(random, 50, 3_000), () => `x-many-${between(random, 0, 1e6)}: ${between(random, 0, 1e9)}\r\n`),
    () => `${pick(random, ["bad name", "bad\u0001name", "", "x:y", "\u00e9"])}: value\r\n`,
    () => ` folded continuation ${fuzzValue(random)}\r\n`,
    () => `content-length: ${pick(random, ["abc", "-1", "1, 2", "99999999999999999999", " 0x10"])}\r\n`,
  ];
  return Array.from({ length: count }, () => pick(random, kinds)());
}

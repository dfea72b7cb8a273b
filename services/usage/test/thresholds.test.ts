import { jetstreamManager } from "@nats-io/jetstream";
import { events, usage } from "@tally/contracts";
import { billingPeriodAt, newId, parsePlanCatalog } from "@tally/platform";
import { eventually } from "@tally/platform/src/testing";
import type { UsageService } from "../src/app";
import { completedEvent, createUsageTestBed, usageClient, type UsageTestBed } from "./helpers";

const plans = parsePlanCatalog({
  default_plan: "pro",
  guest_plan: "pro",
  plans: { pro: { trial_credits: 0, limits: { generations_per_period: 1000, credits_per_period: { limit: 100, thresholds: [0.8, 1.0] } } } },
});

describe("usage thresholds: UsageThresholdCrossed through the usage outbox to JetStream", () => {
  let bed: UsageTestBed;
  let service: UsageService;
  let client: ReturnType<typeof usageClient>;

  beforeAll(async () => {
    bed = await createUsageTestBed("thresholds");
    service = await bed.start({}, { plans });
    client = usageClient(service.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await bed?.close();
  });

  const sql = <T>(statement: string, params: unknown[] = []) => service.orm.em.fork().execute<T[]>(statement, params as never[]);
  /** Every message on the usage stream, decoded, with its Nats-Msg-Id and subject. */
  const published = async () => {
    const jsm = await jetstreamManager(bed.publisher);
    const { state } = await jsm.streams.info(bed.config.NATS_USAGE_STREAM);
    const found = [];
    for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
      const message = await jsm.streams.getMessage(bed.config.NATS_USAGE_STREAM, { seq });
      if (!message) continue;
      found.push({ subject: message.subject, msgId: message.header.get("Nats-Msg-Id"), event: events.UsageThresholdCrossed.decode(message.data) });
    }
    return found;
  };
  const processed = async (eventId: string) => (await sql<{ n: number }>("SELECT count(*)::int AS n FROM processed_events WHERE event_id = ?", [eventId]))[0]!.n === 1 || undefined;

  it("publishes one event at 80 % and one at 100 % of credits_per_period, nothing more for a redelivered completion", async () => {
    const userId = newId();
    const anchor = new Date("2026-01-15T00:00:00.000Z");
    const subject: usage.Subject = { id: userId, kind: usage.SubjectKind.SUBJECT_KIND_USER, plan: "pro", periodAnchor: anchor };
    await client.checkAndReserve({ subject, generationId: newId(), credits: 1n });

    const first = completedEvent(userId, { credits: 50n, occurredAt: new Date() });
    await bed.publishCompleted(first);
    await eventually(() => processed(first.eventId));
    const crossing80 = completedEvent(userId, { credits: 30n, occurredAt: new Date() });
    await bed.publishCompleted(crossing80);
    await bed.publishCompleted(crossing80, `${crossing80.eventId}-redelivered`);
    await eventually(async () => ((await published()).length === 1 ? true : undefined));
    const crossing100 = completedEvent(userId, { credits: 25n, occurredAt: new Date() });
    await bed.publishCompleted(crossing100);
    await bed.publishCompleted(crossing100, `${crossing100.eventId}-redelivered`);
    const more = completedEvent(userId, { credits: 5n, occurredAt: new Date() });
    await bed.publishCompleted(more);
    await eventually(() => processed(more.eventId));
    await eventually(async () => ((await published()).length >= 2 ? true : undefined));
    await eventually(async () => ((await sql<{ n: number }>("SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL"))[0]!.n === 0 ? true : undefined));

    const messages = await published();
    expect(messages).toHaveLength(2);
    const windowStart = billingPeriodAt(anchor, crossing80.occurredAt!).start;
    const common = { subjectId: userId, subjectKind: "user", plan: "pro", limitName: "credits_per_period", limit: 100n, windowStart };
    expect(messages[0]!.event).toMatchObject({ ...common, thresholdPerMille: 800, used: 80n, occurredAt: crossing80.occurredAt });
    expect(messages[1]!.event).toMatchObject({ ...common, thresholdPerMille: 1000, used: 105n, occurredAt: crossing100.occurredAt });
    for (const message of messages) {
      expect(message.subject).toBe(`${bed.config.NATS_SUBJECT_PREFIX}.usage.threshold_crossed`);
      expect(message.msgId).toBe(message.event.eventId);
    }
    const crossings = await sql<{ threshold_per_mille: number }>(
      "SELECT threshold_per_mille FROM threshold_crossings WHERE subject_id = ? ORDER BY threshold_per_mille",
      [userId],
    );
    expect(crossings).toEqual([{ threshold_per_mille: 800 }, { threshold_per_mille: 1000 }]);
  });
});

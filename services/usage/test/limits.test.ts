import { usage } from "@tally/contracts";
import { DomainError, newId, parsePlanCatalog } from "@tally/platform";
import { eventually } from "@tally/platform/src/testing";
import type { UsageService } from "../src/app";
import { usageLogEntryFromCompleted } from "../src/domain/usage-log";
import { completedEvent, createUsageTestBed, failedEvent, recordUsage, usageClient, type UsageTestBed } from "./helpers";

/** Plans small enough to reach in a test; concurrency left wide so the window limits bite first. */
const plans = parsePlanCatalog({
  default_plan: "free",
  guest_plan: "guest",
  plans: {
    guest: { trial_credits: 3, limits: { generations_per_day: 10, concurrent_generations: 500, requests_per_minute: 120 } },
    free: { trial_credits: 10, limits: { generations_per_period: 20, concurrent_generations: 500, requests_per_minute: 600 } },
    pro: {
      trial_credits: 10,
      limits: { generations_per_period: 5000, concurrent_generations: 500, credits_per_period: { limit: 20000, thresholds: [0.8, 1.0] } },
    },
    // One limit each, to reach every limit's edge.
    edge_credits: { trial_credits: 0, limits: { credits_per_period: 10 } },
    edge_processing: { trial_credits: 0, limits: { processing_seconds_per_period: 5 } },
    edge_concurrent: { trial_credits: 0, limits: { concurrent_generations: 2 } },
  },
});

const TTL_MS = 60_000;
const USER = usage.SubjectKind.SUBJECT_KIND_USER;
const GUEST = usage.SubjectKind.SUBJECT_KIND_GUEST;

describe("usage limits: reservations against plan limits", () => {
  let bed: UsageTestBed;
  let service: UsageService;
  let client: ReturnType<typeof usageClient>;
  let now = new Date("2027-03-10T12:00:00.000Z");

  beforeAll(async () => {
    bed = await createUsageTestBed("limits");
    service = await bed.start({ RESERVATION_TTL_MS: TTL_MS, RESERVATION_SWEEP_INTERVAL_MS: 600_000 }, { plans, clock: () => now });
    client = usageClient(service.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await bed?.close();
  });
  beforeEach(() => {
    now = new Date("2027-03-10T12:00:00.000Z");
  });

  const sql = <T>(statement: string, params: unknown[] = []) => service.orm.em.fork().execute<T[]>(statement, params as never[]);
  const subject = (id: string, plan: string, anchor: string, kind = USER): usage.Subject => ({ id, kind, plan, periodAnchor: new Date(anchor) });
  const reserve = (s: usage.Subject, generationId = newId(), credits = 5n) => client.checkAndReserve({ subject: s, generationId, credits });
  const refusal = async (call: Promise<unknown>): Promise<DomainError> => {
    try {
      await call;
    } catch (error) {
      return error as DomainError;
    }
    throw new Error("expected a refusal");
  };
  /** Records completions (no reservation) straight through the consumer's service, as older jobs would. */
  const recordCompletions = async (userId: string, count: number, occurredAt: (i: number) => Date) => {
    for (let start = 0; start < count; start += 10) {
      const chunk = Array.from({ length: Math.min(10, count - start) }, (_, i) =>
        recordUsage(service.orm, bed.subjects.completed, usageLogEntryFromCompleted(completedEvent(userId, { occurredAt: occurredAt(start + i) }))),
      );
      await Promise.all(chunk);
    }
  };
  const limitsOf = async (s: usage.Subject) => {
    const answer = await client.listLimits(s);
    return { ...answer, byName: Object.fromEntries(answer.limits.map((l) => [l.name, l])) };
  };
  const reservationStatus = async (generationId: string) =>
    (await sql<{ status: string }>("SELECT status FROM quota_reservations WHERE generation_id = ?", [generationId]))[0]?.status;
  const reconcile = (id?: string) => service.services.stats.reconcileCounters(id);
  const maxOverLimit = async (subjectId: string, limit: number) => {
    const rows = await sql<{ over: number }>(
      "SELECT count(*)::int AS over FROM period_usage WHERE subject_id = ? AND generations + reserved_generations > ?",
      [subjectId, limit],
    );
    return rows[0]!.over;
  };

  it("lets exactly 7 of 100 concurrent reservations through for a user with 7 left in the period; the rest get plan_limit_exceeded", async () => {
    const userId = newId();
    await recordCompletions(userId, 13, (i) => new Date(Date.UTC(2027, 2, 1, 8, i)));
    const s = subject(userId, "free", "2027-01-15T00:00:00.000Z");
    const generationIds = Array.from({ length: 100 }, () => newId());
    const outcomes = await Promise.allSettled(generationIds.map((id) => reserve(s, id)));

    const granted = generationIds.filter((_, i) => outcomes[i]!.status === "fulfilled");
    const refused = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as DomainError] : []));
    expect(granted).toHaveLength(7);
    expect(refused).toHaveLength(93);
    for (const error of refused) {
      expect(error.reason).toBe("plan_limit_exceeded");
      expect(error.details).toEqual({
        limit_name: "generations_per_period",
        window: "period",
        plan: "free",
        used: 13,
        reserved: 7,
        limit: 20,
        period_start: "2027-02-15T00:00:00.000Z",
        resets_at: "2027-03-15T00:00:00.000Z",
      });
    }
    expect(await maxOverLimit(userId, 20)).toBe(0);

    // The jobs complete: reservations become usage, and used equals the usage log's count for the period.
    for (const generationId of granted) await bed.publishCompleted(completedEvent(userId, { generationId, occurredAt: now }));
    await eventually(async () => ((await limitsOf(s)).byName.generations_per_period?.used === 20n ? true : undefined));
    const { byName } = await limitsOf(s);
    expect(byName.generations_per_period).toMatchObject({ used: 20n, reserved: 0n, remaining: 0n, withinLimit: false, limit: 20n });
    const [logged] = await sql<{ count: number }>(
      "SELECT count(*)::int AS count FROM usage_log WHERE user_id = ? AND outcome = 'completed' AND occurred_at >= '2027-02-15T00:00:00Z' AND occurred_at < '2027-03-15T00:00:00Z'",
      [userId],
    );
    expect(logged!.count).toBe(20);
    for (const generationId of granted) expect(await reservationStatus(generationId)).toBe("consumed");
    expect(await reconcile(userId)).toEqual([]);
    expect(await maxOverLimit(userId, 20)).toBe(0);
    expect((await refusal(reserve(s))).details).toMatchObject({ used: 20, reserved: 0 });
  });

  it("lets exactly 7 of 100 concurrent reservations through for a guest with 7 left today; the rest get guest_limit_exceeded", async () => {
    const guestId = newId();
    await recordCompletions(guestId, 3, (i) => new Date(Date.UTC(2027, 2, 10, 8, i)));
    const s = subject(guestId, "guest", "2027-03-01T00:00:00.000Z", GUEST);
    const outcomes = await Promise.allSettled(Array.from({ length: 100 }, () => reserve(s)));
    const refused = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as DomainError] : []));
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(7);
    expect(refused).toHaveLength(93);
    for (const error of refused) {
      expect(error.reason).toBe("guest_limit_exceeded");
      expect(error.details).toEqual({
        limit_name: "generations_per_day",
        window: "day",
        plan: "guest",
        used: 3,
        reserved: 7,
        limit: 10,
        period_start: "2027-03-01T00:00:00.000Z",
        resets_at: "2027-03-11T00:00:00.000Z",
      });
    }
    const [day] = await sql<{ total: number }>("SELECT (generations + reserved_generations)::int AS total FROM daily_usage WHERE subject_id = ?", [guestId]);
    expect(day!.total).toBe(10);
    expect(await reconcile(guestId)).toEqual([]);
  });

  it("allows a user with 500 completed generations in earlier periods in a new period", async () => {
    const userId = newId();
    // 500 completions between 2026-11-20 and 2027-02-14, all before the current period (2027-02-15 …).
    await recordCompletions(userId, 500, (i) => new Date(Date.UTC(2026, 10, 20) + i * 4 * 3_600_000));
    const s = subject(userId, "free", "2027-01-15T00:00:00.000Z");
    const reservation = await reserve(s);
    expect(reservation.reservation?.periodStart).toEqual(new Date("2027-02-15T00:00:00.000Z"));
    const { byName } = await limitsOf(s);
    expect(byName.generations_per_period).toMatchObject({ used: 0n, reserved: 1n, remaining: 19n, withinLimit: true });
    expect(await reconcile(userId)).toEqual([]);
  });

  it("computes month-end periods from a Jan 31 anchor: Feb 28 (Feb 29 in a leap year), then Mar 31", async () => {
    const userId = newId();
    const s = subject(userId, "free", "2027-01-31T00:00:00.000Z");
    const periodAt = async (at: string) => {
      now = new Date(at);
      const answer = await client.listLimits(s);
      return [answer.periodStart?.toISOString(), answer.periodEnd?.toISOString()];
    };
    expect(await periodAt("2027-02-27T23:59:59.999Z")).toEqual(["2027-01-31T00:00:00.000Z", "2027-02-28T00:00:00.000Z"]);
    expect(await periodAt("2027-02-28T00:00:00.000Z")).toEqual(["2027-02-28T00:00:00.000Z", "2027-03-31T00:00:00.000Z"]);
    expect(await periodAt("2027-03-31T00:00:00.000Z")).toEqual(["2027-03-31T00:00:00.000Z", "2027-04-30T00:00:00.000Z"]);
    const leap = subject(newId(), "free", "2028-01-31T00:00:00.000Z");
    now = new Date("2028-02-29T10:00:00.000Z");
    const answer = await client.listLimits(leap);
    expect([answer.periodStart, answer.periodEnd]).toEqual([new Date("2028-02-29T00:00:00.000Z"), new Date("2028-03-31T00:00:00.000Z")]);

    // Reserved in the period ending Feb 28, completed after the boundary: counted in the period of occurred_at.
    now = new Date("2027-02-27T23:00:00.000Z");
    const generationId = newId();
    await reserve(s, generationId);
    expect((await refusalOrLimits(s)).generations_per_period).toMatchObject({ used: 0n, reserved: 1n });
    await bed.publishCompleted(completedEvent(userId, { generationId, occurredAt: new Date("2027-02-28T00:30:00.000Z") }));
    await eventually(async () => ((await reservationStatus(generationId)) === "consumed" ? true : undefined));
    expect((await refusalOrLimits(s)).generations_per_period).toMatchObject({ used: 0n, reserved: 0n });
    now = new Date("2027-03-01T00:00:00.000Z");
    expect((await refusalOrLimits(s)).generations_per_period).toMatchObject({ used: 1n, reserved: 0n, resetsAt: new Date("2027-03-31T00:00:00.000Z") });
    expect(await reconcile(userId)).toEqual([]);
  });
  const refusalOrLimits = async (s: usage.Subject) => (await limitsOf(s)).byName;

  it("applies a plan change at once and keeps the usage already counted", async () => {
    const userId = newId();
    await recordCompletions(userId, 20, (i) => new Date(Date.UTC(2027, 2, 2, 9, i)));
    const free = subject(userId, "free", "2027-01-15T00:00:00.000Z");
    const refused = await refusal(reserve(free));
    expect(refused.reason).toBe("plan_limit_exceeded");
    expect(refused.details).toMatchObject({ limit_name: "generations_per_period", plan: "free", used: 20, limit: 20 });

    const pro = { ...free, plan: "pro" };
    await reserve(pro, newId(), 7n);
    const { byName, plan } = await limitsOf(pro);
    expect(plan).toBe("pro");
    expect(byName.generations_per_period).toMatchObject({ limit: 5000n, used: 20n, reserved: 1n });
    expect(byName.credits_per_period).toMatchObject({ limit: 20000n, used: 100n, reserved: 7n });
    // Back on free: the usage counted stays counted, the reservation too.
    expect((await limitsOf(free)).byName.generations_per_period).toMatchObject({ limit: 20n, used: 20n, reserved: 1n, remaining: 0n, withinLimit: false });
    expect(await reconcile(userId)).toEqual([]);
  });

  it("decides every limit's edge the way the domain rule does, on the one-statement path as on the first call's", async () => {
    // The first call of a subject in a period creates its counter rows (the transactional
    // path); later calls take the one-statement path, which asserts its decision against the
    // domain rule on every answer.
    const anchor = "2027-03-01T00:00:00.000Z";
    const credits = subject(newId(), "edge_credits", anchor);
    await reserve(credits, newId(), 6n);
    await reserve(credits, newId(), 4n); // 10 of 10: used + reserved + amount <= limit
    expect((await refusal(reserve(credits, newId(), 1n))).details).toMatchObject({ limit_name: "credits_per_period", used: 0, reserved: 10, limit: 10 });
    // A job priced 0 refuses once used + reserved reaches the limit.
    expect((await refusal(reserve(credits, newId(), 0n))).details).toMatchObject({ limit_name: "credits_per_period" });

    const processingId = newId();
    const processing = subject(processingId, "edge_processing", anchor);
    await recordCompletions(processingId, 1, () => new Date("2027-03-05T00:00:00.000Z"));
    await recordUsage(service.orm, bed.subjects.completed, usageLogEntryFromCompleted(completedEvent(processingId, { occurredAt: new Date("2027-03-05T00:01:00.000Z"), processingTimeMs: 1_999n })));
    await reserve(processing); // 4.999 s of 5 s used: still allowed
    await reserve(processing); // nothing reserved against processing time: allowed again
    await recordUsage(service.orm, bed.subjects.completed, usageLogEntryFromCompleted(completedEvent(processingId, { occurredAt: new Date("2027-03-05T00:02:00.000Z"), processingTimeMs: 1n })));
    expect((await refusal(reserve(processing))).details).toMatchObject({ limit_name: "processing_seconds_per_period", used: 5, limit: 5 });

    const concurrent = subject(newId(), "edge_concurrent", anchor);
    const first = newId();
    await reserve(concurrent, first);
    await reserve(concurrent);
    expect((await refusal(reserve(concurrent))).details).toMatchObject({ limit_name: "concurrent_generations", used: 2, limit: 2, resets_at: "" });
    await client.releaseReservation(first);
    await reserve(concurrent);
    for (const s of [credits, processing, concurrent]) expect(await reconcile(s.id)).toEqual([]);
  });

  it("follows a re-anchored billing period at once, there and back, with counters equal to the usage log and reservations carried over", async () => {
    const userId = newId();
    const periodRows = async () =>
      (await sql<{ period_start: string; generations: number; reserved_generations: number }>(
        "SELECT period_start, generations::int AS generations, reserved_generations::int AS reserved_generations FROM period_usage WHERE subject_id = ? ORDER BY period_start",
        [userId],
      )).map((row) => ({ start: new Date(row.period_start).toISOString(), generations: row.generations, reserved: row.reserved_generations }));
    // Anchored on Jan 15 (period Feb 15 .. Mar 15 at now, Mar 10): 2 completions on Feb 20, 3 on Mar 2, one job running.
    const before = subject(userId, "free", "2027-01-15T00:00:00.000Z");
    await client.listLimits(before);
    await recordCompletions(userId, 2, (i) => new Date(Date.UTC(2027, 1, 20, 9, i)));
    await recordCompletions(userId, 3, (i) => new Date(Date.UTC(2027, 2, 2, 9, i)));
    const running = newId();
    await reserve(before, running);
    const old = await limitsOf(before);
    expect([old.periodStart, old.periodEnd]).toEqual([new Date("2027-02-15T00:00:00.000Z"), new Date("2027-03-15T00:00:00.000Z")]);
    expect(old.byName.generations_per_period).toMatchObject({ used: 5n, reserved: 1n });

    // Re-anchored on Mar 1 (credits' SetBillingAnchor; callers pass the account's new anchor): the
    // current period is Mar 1 .. Apr 1, counted from the usage log (Mar 2's 3), and the running
    // job's reservation moved with it; the old anchor's rows are gone, not left behind stale.
    const after = subject(userId, "free", "2027-03-01T00:00:00.000Z");
    const current = await limitsOf(after);
    expect([current.periodStart, current.periodEnd]).toEqual([new Date("2027-03-01T00:00:00.000Z"), new Date("2027-04-01T00:00:00.000Z")]);
    expect(current.byName.generations_per_period).toMatchObject({ used: 3n, reserved: 1n, remaining: 16n, resetsAt: new Date("2027-04-01T00:00:00.000Z") });
    expect(await periodRows()).toEqual([{ start: "2027-03-01T00:00:00.000Z", generations: 3, reserved: 1 }]);
    const [stored] = await sql<{ period_anchor: Date }>("SELECT period_anchor FROM subjects WHERE id = ?", [userId]);
    expect(new Date(stored!.period_anchor)).toEqual(new Date("2027-03-01T00:00:00.000Z"));
    expect(await reconcile(userId)).toEqual([]);

    // The running job completes inside both windows (Mar 10); a new one is reserved (one statement) and completes too.
    await bed.publishCompleted(completedEvent(userId, { generationId: running, occurredAt: now }));
    await eventually(async () => ((await reservationStatus(running)) === "consumed" ? true : undefined));
    const generationId = newId();
    const { reservation } = await reserve(after, generationId);
    expect(reservation?.periodStart).toEqual(new Date("2027-03-01T00:00:00.000Z"));
    await bed.publishCompleted(completedEvent(userId, { generationId, occurredAt: now }));
    await eventually(async () => ((await reservationStatus(generationId)) === "consumed" ? true : undefined));
    expect((await limitsOf(after)).byName.generations_per_period).toMatchObject({ used: 5n, reserved: 0n });
    expect(await reconcile(userId)).toEqual([]);

    // Back to Jan 15: Feb 15 .. Mar 15 is counted again from the log (2 + 3 + the 2 of Mar 10), not
    // taken from a row the first anchor left; the limit check (one statement) sees that count.
    const back = await limitsOf(before);
    expect(back.byName.generations_per_period).toMatchObject({ used: 7n, reserved: 0n });
    expect(await periodRows()).toEqual([{ start: "2027-02-15T00:00:00.000Z", generations: 7, reserved: 0 }]);
    await recordCompletions(userId, 13, (i) => new Date(Date.UTC(2027, 2, 3, 9, i)));
    expect((await refusal(reserve(before))).details).toMatchObject({ limit_name: "generations_per_period", used: 20, limit: 20 });
    expect(await reconcile(userId)).toEqual([]);

    // Once the period ends, the next one (Mar 15 .. Apr 15) starts from the log: nothing yet.
    now = new Date("2027-03-15T00:00:00.000Z");
    const next = await limitsOf(before);
    expect([next.periodStart, next.periodEnd]).toEqual([new Date("2027-03-15T00:00:00.000Z"), new Date("2027-04-15T00:00:00.000Z")]);
    expect(next.byName.generations_per_period).toMatchObject({ used: 0n, reserved: 0n });
  });

  it("gives the quota back on a failure event and on a cancellation event (never logged nor dead-lettered)", async () => {
    const userId = newId();
    const s = subject(userId, "free", "2027-01-15T00:00:00.000Z");
    const [failing, cancelled] = [newId(), newId()];
    await reserve(s, failing, 3n);
    await reserve(s, cancelled, 3n);
    expect((await limitsOf(s)).byName.generations_per_period).toMatchObject({ used: 0n, reserved: 2n });
    expect((await limitsOf(s)).byName.concurrent_generations).toMatchObject({ used: 2n, limit: 500n, resetsAt: undefined });

    await bed.publishFailed(failedEvent(userId, { generationId: failing, occurredAt: now }));
    const cancellation = { eventId: newId(), occurredAt: now, userId, generationId: cancelled, inputType: "photo", credits: 3n, costMicros: 0n, provider: "" };
    await bed.publishCancelled(cancellation);
    await bed.publishCancelled(cancellation, `${cancellation.eventId}-again`);
    await eventually(async () => ((await reservationStatus(failing)) === "released" && (await reservationStatus(cancelled)) === "released" ? true : undefined));
    const { byName } = await limitsOf(s);
    expect(byName.generations_per_period).toMatchObject({ used: 0n, reserved: 0n, remaining: 20n });
    expect(byName.concurrent_generations).toMatchObject({ used: 0n });

    const logged = await sql<{ generation_id: string; outcome: string }>("SELECT generation_id, outcome FROM usage_log WHERE user_id = ?", [userId]);
    expect(logged).toEqual([{ generation_id: failing, outcome: "failed" }]);
    const inbox = await sql<{ subject: string }>("SELECT subject FROM processed_events WHERE event_id = ?", [cancellation.eventId]);
    expect(inbox).toEqual([{ subject: `${bed.config.NATS_SUBJECT_PREFIX}.generation.cancelled` }]);
    const letters = await sql<{ count: number }>("SELECT count(*)::int AS count FROM dead_letters WHERE subject LIKE '%.generation.cancelled'");
    expect(letters[0]!.count).toBe(0);
    // The cancellation is in the cancellation log once (the duplicate found the inbox), and the lifetime stats count it.
    const cancellations = await sql<{ generation_id: string }>("SELECT generation_id FROM cancellation_log WHERE user_id = ?", [userId]);
    expect(cancellations).toEqual([{ generation_id: cancelled }]);
    const { stats } = await client.getUserStats(userId);
    expect(stats).toMatchObject({ totalGenerations: 0n, totalFailed: 1n, totalCancelled: 1n, running: 0n, totalCreated: 2n });
    expect(await reconcile(userId)).toEqual([]);
  });

  it("expires a reservation never followed by an event and gives its quota back; a late completion still counts once", async () => {
    const userId = newId();
    const s = subject(userId, "free", "2027-01-15T00:00:00.000Z");
    const generationId = newId();
    const { reservation } = await reserve(s, generationId);
    expect(reservation?.expiresAt).toEqual(new Date(now.getTime() + TTL_MS));
    now = new Date(now.getTime() + TTL_MS + 1_000);
    service.sweepReservations();
    await eventually(async () => ((await reservationStatus(generationId)) === "expired" ? true : undefined));
    expect((await limitsOf(s)).byName.generations_per_period).toMatchObject({ used: 0n, reserved: 0n });
    // A release after the expiry answers the reservation as it is and changes nothing.
    const released = await client.releaseReservation(generationId);
    expect(released.reservation?.status).toBe(usage.ReservationStatus.RESERVATION_STATUS_EXPIRED);

    await bed.publishCompleted(completedEvent(userId, { generationId, occurredAt: now }));
    await eventually(async () => ((await limitsOf(s)).byName.generations_per_period?.used === 1n ? true : undefined));
    expect((await limitsOf(s)).byName.generations_per_period).toMatchObject({ used: 1n, reserved: 0n });
    expect(await reservationStatus(generationId)).toBe("expired");
    expect(await reconcile(userId)).toEqual([]);
  });

  it("answers a retried reservation with the same generation id without reserving more, and refuses malformed subjects", async () => {
    const s = subject(newId(), "free", "2027-01-15T00:00:00.000Z");
    const generationId = newId();
    const first = await reserve(s, generationId);
    const again = await reserve(s, generationId);
    expect(again).toEqual(first);
    expect((await limitsOf(s)).byName.generations_per_period).toMatchObject({ reserved: 1n });
    const unknownPlan = await refusal(reserve({ ...s, plan: "platinum" }));
    expect(unknownPlan.reason).toBe("validation");
    expect(unknownPlan.details).toMatchObject({ field: "subject.plan" });
    const noAnchor = await refusal(reserve({ ...s, periodAnchor: undefined }));
    expect(noAnchor.details).toMatchObject({ field: "subject.period_anchor" });
    expect((await refusal(client.releaseReservation(newId()))).reason).toBe("not_found");
  });

  it("answers 20 concurrent retries of one generation id with one reservation, reserving once (the lock-wait race)", async () => {
    const s = subject(newId(), "free", "2027-01-15T00:00:00.000Z");
    const generationId = newId();
    const answers = await Promise.all(Array.from({ length: 20 }, () => reserve(s, generationId)));
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    expect((await limitsOf(s)).byName.generations_per_period).toMatchObject({ reserved: 1n });
    expect((await limitsOf(s)).byName.concurrent_generations).toMatchObject({ used: 1n });
    expect(await reconcile(s.id)).toEqual([]);
  });

  it("adopts a guest once: its usage today moves to the user, later guest events count for the user, and counters stay equal to the log", async () => {
    const guestId = newId();
    const userId = newId();
    const guest = subject(guestId, "guest", "2027-03-05T00:00:00.000Z", GUEST);
    await client.listLimits(guest);
    await recordCompletions(guestId, 2, (i) => new Date(Date.UTC(2027, 2, 10, 9, i)));
    const user = subject(userId, "free", "2027-03-10T11:00:00.000Z");

    expect((await client.adoptGuest(guestId, user)).generationsMoved).toBe(2n);
    expect((await client.adoptGuest(guestId, user)).generationsMoved).toBe(0n);
    expect((await limitsOf(user)).byName.generations_per_period).toMatchObject({ used: 2n });
    expect((await limitsOf(guest)).byName.generations_per_day).toMatchObject({ used: 0n });
    const [row] = await sql<{ adopted_by: string; kind: string }>("SELECT adopted_by, kind FROM subjects WHERE id = ?", [guestId]);
    expect(row).toEqual({ adopted_by: userId, kind: "guest" });

    // A guest job that ends after the sign-up counts for the user.
    await bed.publishCompleted(completedEvent(guestId, { occurredAt: new Date("2027-03-10T10:00:00.000Z") }));
    await eventually(async () => ((await limitsOf(user)).byName.generations_per_period?.used === 3n ? true : undefined));
    expect(await reconcile(userId)).toEqual([]);
    expect(await reconcile(guestId)).toEqual([]);
  });

  it("reconciles every counter of every subject with the usage log and the active reservations", async () => {
    expect(await reconcile()).toEqual([]);
  });
});

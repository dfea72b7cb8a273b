import { usage } from "@tally/contracts";
import { loadPlanCatalog, newId } from "@tally/platform";
import { eventually } from "@tally/platform/src/testing";
import type { UsageService } from "../src/app";
import { usageLogEntryFromCompleted } from "../src/domain/usage-log";
import { completedEvent, createUsageTestBed, failedEvent, getUserStats, reconcileUserStats, recordUsage, usageClient, type UsageTestBed } from "./helpers";

/** Rows of the usage log of one user, straight from the database. */
const usageLogRows = (service: UsageService, userId: string) =>
  service.orm.em
    .fork()
    .execute<{ event_id: string; outcome: string; billable: boolean; credits: string; cost_micros: string }[]>(
      "SELECT event_id, outcome, billable, credits, cost_micros FROM usage_log WHERE user_id = ? ORDER BY occurred_at",
      [userId],
    );

describe("usage service consuming generation events", () => {
  let bed: UsageTestBed;
  let service: UsageService;
  let client: ReturnType<typeof usageClient>;

  beforeAll(async () => {
    bed = await createUsageTestBed("consumer");
    service = await bed.start();
    client = usageClient(service.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await bed?.close();
  });

  it("records a completion (billable) and a failure (not billable) in the usage log and the stats", async () => {
    const userId = newId();
    const done = completedEvent(userId, { credits: 7n, costMicros: 250_000n, occurredAt: new Date("2026-11-20T08:00:00.000Z") });
    const failure = failedEvent(userId, { credits: 4n, costMicros: 9_000n, occurredAt: new Date("2026-11-20T09:00:00.000Z") });
    await bed.publishCompleted(done);
    await bed.publishFailed(failure);

    const rows = await eventually(async () => {
      const found = await usageLogRows(service, userId);
      return found.length === 2 ? found : undefined;
    });
    expect(rows).toEqual([
      { event_id: done.eventId, outcome: "completed", billable: true, credits: "7", cost_micros: "250000" },
      { event_id: failure.eventId, outcome: "failed", billable: false, credits: "4", cost_micros: "9000" },
    ]);

    const { stats } = await client.getUserStats(userId);
    // The stored row, and what the facts add: the completion's output and processing time, the breakdowns, the first activity.
    expect(stats).toEqual({
      userId,
      totalGenerations: 1n,
      totalFailed: 1n,
      totalCostMicros: 250_000n,
      totalCreditsSpent: 7n,
      lastActivityAt: new Date("2026-11-20T09:00:00.000Z"),
      totalDownloaded: 0n,
      totalCreated: 2n,
      totalCancelled: 0n,
      running: 0n,
      totalOutputBytes: done.outputBytes,
      totalProcessingTimeMs: done.processingTimeMs,
      byInputType: done.inputType === failure.inputType ? { [done.inputType]: { completed: 1n, failed: 1n } } : { [done.inputType]: { completed: 1n, failed: 0n }, [failure.inputType]: { completed: 0n, failed: 1n } },
      byProvider: { [done.provider]: { completed: 1n, failed: 1n } },
      firstActivityAt: new Date("2026-11-20T08:00:00.000Z"),
    });
    expect(await reconcileUserStats(service.orm, userId)).toEqual([]);
  });

  it("counts the same event once even when the stream holds it twice", async () => {
    const userId = newId();
    const done = completedEvent(userId, { credits: 3n, costMicros: 40_000n });
    // Different Nats-Msg-Ids defeat the stream's de-duplication: the consumer sees both.
    await bed.publishCompleted(done, `${done.eventId}-a`);
    await bed.publishCompleted(done, `${done.eventId}-b`);
    const marker = completedEvent(userId, { credits: 1n, costMicros: 1n });
    await bed.publishCompleted(marker);

    // The marker comes after both copies on the stream and the consumer handles in order.
    await eventually(async () => ((await usageLogRows(service, userId)).some((r) => r.event_id === marker.eventId) ? true : undefined));
    const rows = await usageLogRows(service, userId);
    expect(rows.filter((r) => r.event_id === done.eventId)).toHaveLength(1);
    const stats = await getUserStats(service.orm, userId);
    expect(stats.totalGenerations).toBe(2n);
    expect(stats.totalCreditsSpent).toBe(4n);
    expect(stats.totalCostMicros).toBe(40_001n);
    const [inbox] = await service.orm.em.fork().execute<{ count: string }[]>("SELECT count(*) FROM processed_events WHERE event_id = ?", [done.eventId]);
    expect(inbox!.count).toBe("1");
  });

  it("keeps stats equal to the usage log under many concurrent events for one user and two replicas", async () => {
    const userId = newId();
    // A second replica on the same durable consumer: both record for the same user at once.
    const replica = await bed.start();
    try {
      const published = Array.from({ length: 120 }, (_, i) =>
        i % 4 === 3
          ? failedEvent(userId, { credits: BigInt(i + 1), costMicros: BigInt(1_000 + i) })
          : completedEvent(userId, { credits: BigInt(i + 1), costMicros: BigInt(100_003 * (i + 1)) }),
      );
      await Promise.all(
        published.map((event) => ("errorCode" in event ? bed.publishFailed(event) : bed.publishCompleted(event as never))),
      );
      const completions = published.filter((e) => !("errorCode" in e));
      await eventually(async () => ((await usageLogRows(service, userId)).length === published.length ? true : undefined), 30_000);

      const stats = await getUserStats(service.orm, userId);
      expect(stats.totalGenerations).toBe(BigInt(completions.length));
      expect(stats.totalFailed).toBe(BigInt(published.length - completions.length));
      expect(stats.totalCostMicros).toBe(completions.reduce((sum, e) => sum + e.costMicros, 0n));
      expect(stats.totalCreditsSpent).toBe(completions.reduce((sum, e) => sum + e.credits, 0n));
      expect(await reconcileUserStats(service.orm, userId)).toEqual([]);
    } finally {
      await replica.stop();
    }
  });

  it("dead-letters a poison message and goes on with the messages after it", async () => {
    const userId = newId();
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
    await bed.publishRaw(bed.subjects.completed, garbage);
    await bed.publishCompleted(completedEvent(userId, { eventId: "not-a-uuid" }));
    await bed.publishRaw(`${bed.config.NATS_SUBJECT_PREFIX}.generation.exploded`, Buffer.from("?"));
    const after = completedEvent(userId);
    await bed.publishCompleted(after);

    await eventually(async () => ((await usageLogRows(service, userId)).length === 1 ? true : undefined));
    const letters = await eventually(async () => {
      const rows = await service.orm.em
        .fork()
        .execute<{ subject: string; payload: Buffer; error: string }[]>("SELECT subject, payload, error FROM dead_letters ORDER BY stream_sequence");
      return rows.length >= 3 ? rows : undefined;
    });
    expect(letters).toHaveLength(3);
    expect(Buffer.compare(letters[0]!.payload, garbage)).toBe(0);
    expect(letters[1]!.error).toMatch(/event_id must be a UUID/);
    expect(letters[2]).toMatchObject({ subject: `${bed.config.NATS_SUBJECT_PREFIX}.generation.exploded`, error: expect.stringMatching(/unknown subject/) });
    // Terminated, not pending: nothing of them comes back.
    expect((await service.orm.em.fork().execute<{ n: string }[]>("SELECT count(*) AS n FROM dead_letters"))[0]!.n).toBe("3");
  });

  it("answers zeros for a user with no usage and validation for a malformed id", async () => {
    const userId = newId();
    const { stats } = await client.getUserStats(userId);
    expect(stats).toMatchObject({ userId, totalGenerations: 0n, totalFailed: 0n, totalCostMicros: 0n, totalCreditsSpent: 0n, lastActivityAt: undefined, totalDownloaded: 0n, totalCreated: 0n, totalCancelled: 0n, running: 0n });
    await expect(client.getUserStats("nope")).rejects.toMatchObject({ reason: "validation" });
  });

  it("pages through a user's usage log newest first", async () => {
    const userId = newId();
    const base = Date.parse("2026-10-01T00:00:00.000Z");
    // 7 entries, two of them at the same instant so the id breaks the tie.
    const published = Array.from({ length: 7 }, (_, i) =>
      completedEvent(userId, { occurredAt: new Date(base + Math.min(i, 5) * 60_000), credits: BigInt(i + 1) }),
    );
    for (const event of published) await bed.publishCompleted(event);
    await eventually(async () => ((await usageLogRows(service, userId)).length === 7 ? true : undefined));

    const seen: usage.UsageLogEntry[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await client.listUsageLogEntries({ userId, pageSize: 3, pageToken });
      expect(page.entries.length).toBeLessThanOrEqual(3);
      seen.push(...page.entries);
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken);
    expect(pages).toBe(3);
    expect(seen.map((e) => e.eventId).sort()).toEqual(published.map((e) => e.eventId).sort());
    for (let i = 1; i < seen.length; i++) {
      const previous = seen[i - 1]!.occurredAt!.getTime();
      const current = seen[i]!.occurredAt!.getTime();
      expect(current <= previous).toBe(true);
      if (current === previous) expect(seen[i]!.id < seen[i - 1]!.id).toBe(true);
    }
    expect(seen[0]).toMatchObject({ outcome: usage.UsageOutcome.USAGE_OUTCOME_COMPLETED, billable: true, userId });

    const all = await client.listUsageLogEntries({ userId });
    expect(all.entries).toHaveLength(7);
    expect(all.nextPageToken).toBe("");
    await expect(client.listUsageLogEntries({ userId, pageToken: "garbage!" })).rejects.toMatchObject({ reason: "validation" });
    await expect(client.listUsageLogEntries({ userId, pageSize: 101 })).rejects.toMatchObject({ reason: "validation" });
    const firstPage = await client.listUsageLogEntries({ userId, pageSize: 1 });
    await expect(client.listUsageLogEntries({ userId: newId(), pageToken: firstPage.nextPageToken })).rejects.toMatchObject({ reason: "validation" });
  });

  it("reconciliation reports stored stats that disagree with the usage log, and users with stats but no log", async () => {
    const userId = newId();
    const entry = usageLogEntryFromCompleted(completedEvent(userId, { credits: 6n, costMicros: 60_000n }));
    expect((await recordUsage(service.orm, bed.subjects.completed, entry)).kind).toBe("recorded");
    expect(await reconcileUserStats(service.orm, userId)).toEqual([]);

    const em = service.orm.em.fork();
    await em.execute("UPDATE user_stats SET total_credits_spent = total_credits_spent + 1 WHERE user_id = ?", [userId]);
    const [difference] = await reconcileUserStats(service.orm, userId);
    expect(difference).toMatchObject({ userId, stored: { totalCreditsSpent: 7n }, fromUsageLog: { totalCreditsSpent: 6n, totalGenerations: 1n } });

    const statsOnly = newId();
    await em.execute("INSERT INTO user_stats (user_id, total_generations) VALUES (?, 2)", [statsOnly]);
    const everyone = await reconcileUserStats(service.orm);
    expect(everyone.map((d) => d.userId).sort()).toEqual([userId, statsOnly].sort());
    expect(everyone.find((d) => d.userId === statsOnly)).toMatchObject({ stored: { totalGenerations: 2n }, fromUsageLog: { totalGenerations: 0n, lastActivityAt: null } });
    await expect(reconcileUserStats(service.orm, "nope")).rejects.toMatchObject({ reason: "validation" });

    // Put the rows back so later reconciliations of this database agree again.
    await em.execute("UPDATE user_stats SET total_credits_spent = total_credits_spent - 1 WHERE user_id = ?", [userId]);
    await em.execute("DELETE FROM user_stats WHERE user_id = ?", [statsOnly]);
    expect(await reconcileUserStats(service.orm)).toEqual([]);
  });

  it("records with each entry its subject's plan and limits, billing period, kind, classification and output size", async () => {
    const userId = newId();
    const guestId = newId();
    const anchor = new Date("2026-10-15T00:00:00.000Z");
    const plans = loadPlanCatalog(undefined);
    const reserved = newId();
    await client.checkAndReserve({
      subject: { id: userId, kind: usage.SubjectKind.SUBJECT_KIND_USER, plan: plans.defaultPlan, periodAnchor: anchor },
      generationId: reserved,
      credits: 5n,
    });
    const guestGeneration = newId();
    await client.checkAndReserve({
      subject: { id: guestId, kind: usage.SubjectKind.SUBJECT_KIND_GUEST, plan: plans.guestPlan, periodAnchor: anchor },
      generationId: guestGeneration,
      credits: 1n,
    });
    const occurredAt = new Date("2026-11-20T08:00:00.000Z");
    await bed.publishCompleted(completedEvent(userId, { generationId: reserved, occurredAt, outputBytes: 12_345n }));
    await bed.publishFailed(failedEvent(userId, { occurredAt: new Date("2026-11-20T09:00:00.000Z") }));
    await bed.publishCompleted(completedEvent(guestId, { generationId: guestGeneration, occurredAt }));
    const parent = newId();
    await bed.publishCompleted(
      completedEvent(guestId, { occurredAt: new Date("2026-11-21T08:00:00.000Z"), billingClassification: "paid_regeneration", billingReason: "new run of a completed job", parentGenerationId: parent }),
    );

    const mine = await eventually(async () => {
      const page = await client.listUsageLogEntries({ userId });
      return page.entries.length === 2 ? page.entries : undefined;
    });
    const limitsOf = (plan: string) => JSON.stringify(Object.fromEntries(Object.entries(plans.plans[plan]!.limits).map(([name, limit]) => [name, limit!.limit])));
    const period = { periodStart: new Date("2026-11-15T00:00:00.000Z"), periodEnd: new Date("2026-12-15T00:00:00.000Z") };
    const [failure, completion] = mine;
    expect(completion).toMatchObject({
      generationId: reserved,
      plan: plans.defaultPlan,
      ...period,
      billingClassification: "original",
      billingReason: "",
      parentGenerationId: "",
      outputBytes: 12_345n,
      subjectKind: "user",
    });
    expect(JSON.parse(completion!.planLimitsJson)).toEqual(JSON.parse(limitsOf(plans.defaultPlan)));
    // A failure snapshots its subject too (no reservation here: the row stored by the earlier reserve), with no output.
    expect(failure).toMatchObject({ outcome: usage.UsageOutcome.USAGE_OUTCOME_FAILED, plan: plans.defaultPlan, ...period, outputBytes: 0n, subjectKind: "user", billingClassification: "original" });

    const guests = await eventually(async () => {
      const page = await client.listUsageLogEntries({ userId: guestId });
      return page.entries.length === 2 ? page.entries : undefined;
    });
    expect(guests[1]).toMatchObject({ subjectKind: "guest", plan: plans.guestPlan, ...period, billingClassification: "original", outputBytes: 2_048n });
    expect(guests[0]).toMatchObject({ subjectKind: "guest", billingClassification: "paid_regeneration", billingReason: "new run of a completed job", parentGenerationId: parent });

    // A subject usage has never seen: no plan, no period; an event usage's subjects table knows nothing of.
    const stranger = newId();
    await bed.publishFailed(failedEvent(stranger));
    const [unknown] = await eventually(async () => {
      const page = await client.listUsageLogEntries({ userId: stranger });
      return page.entries.length === 1 ? page.entries : undefined;
    });
    expect(unknown).toMatchObject({ plan: "", planLimitsJson: "", periodStart: undefined, periodEnd: undefined, subjectKind: "" });
    expect(await reconcileUserStats(service.orm)).toEqual([]);
  });

  it("counts each download once in the stats, not in the usage log or the limits, and reconciles it", async () => {
    const userId = newId();
    const generationId = newId();
    const download = (eventId = newId()) => ({ eventId, occurredAt: new Date(), userId, generationId, outputBytes: 4_096n });
    const first = download();
    await bed.publishDownloaded(first);
    await bed.publishDownloaded(download());
    // The same event again under another Nats-Msg-Id: the stream lets it through, the inbox does not.
    await bed.publishDownloaded(first, `${first.eventId}-again`);
    const marker = completedEvent(userId);
    await bed.publishCompleted(marker);

    await eventually(async () => ((await usageLogRows(service, userId)).length === 1 ? true : undefined));
    const { stats } = await client.getUserStats(userId);
    expect(stats).toMatchObject({ totalDownloaded: 2n, totalGenerations: 1n, totalFailed: 0n, lastActivityAt: marker.occurredAt });
    const rows = await service.orm.em.fork().execute<{ n: string }[]>("SELECT count(*) AS n FROM download_log WHERE user_id = ?", [userId]);
    expect(rows[0]!.n).toBe("2");
    expect(await reconcileUserStats(service.orm, userId)).toEqual([]);

    // A planted difference is found, and a user with downloads only reconciles too.
    const em = service.orm.em.fork();
    await em.execute("UPDATE user_stats SET total_downloaded = total_downloaded + 1 WHERE user_id = ?", [userId]);
    expect(await reconcileUserStats(service.orm, userId)).toMatchObject([{ userId, stored: { totalDownloaded: 3n }, fromUsageLog: { totalDownloaded: 2n } }]);
    await em.execute("UPDATE user_stats SET total_downloaded = total_downloaded - 1 WHERE user_id = ?", [userId]);
    const downloader = newId();
    await bed.publishDownloaded({ ...download(), userId: downloader });
    await eventually(async () => ((await getUserStats(service.orm, downloader)).totalDownloaded === 1n ? true : undefined));
    expect(await reconcileUserStats(service.orm)).toEqual([]);
    await expect(em.execute("DELETE FROM download_log")).rejects.toThrow(/immutable/);
  });

  it("refuses to update or delete a usage log entry", async () => {
    const em = service.orm.em.fork();
    await expect(em.execute("UPDATE usage_log SET credits = credits + 1")).rejects.toThrow(/immutable/);
    await expect(em.execute("DELETE FROM usage_log")).rejects.toThrow(/immutable/);
  });
});

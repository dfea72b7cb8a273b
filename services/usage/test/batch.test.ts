import { newId } from "@tally/platform";
import { eventually } from "@tally/platform/src/testing";
import type { UsageService } from "../src/app";
import type { UsageLogEntryDraft } from "../src/domain/types";
import { usageLogEntryFromCompleted, usageLogEntryFromFailed } from "../src/domain/usage-log";
import { laneOf } from "../src/runners/generation-event-messages";
import { completedEvent, createUsageTestBed, failedEvent, getUserStats, reconcileUserStats, type UsageTestBed } from "./helpers";

/**
 * The consumer records each pulled chunk of events in ONE transaction (rows written by one
 * transaction share its `xmin`), de-duplicates within the chunk, isolates an event the database
 * refuses, and starts the usage-log partition runner.
 */
describe("batch consumer", () => {
  let bed: UsageTestBed;

  beforeAll(async () => {
    bed = await createUsageTestBed("batch", { CONSUMER_BATCH_SIZE: 100, CONSUMER_CHUNKS_IN_FLIGHT: 1 });
  });
  afterAll(async () => {
    await bed?.close();
  });

  const sql = <T>(service: UsageService, query: string, params: unknown[] = []) => service.orm.em.fork().execute<T[]>(query, params);

  /** A user usage knows (plan pro, anchored 2026-01-15) and how to record generation drafts of it as one batch (`recordBatch`). */
  async function proUser(service: UsageService) {
    const userId = newId();
    await sql(service, "INSERT INTO subjects (id, kind, plan, period_anchor) VALUES (?, 'user', 'pro', ?::timestamptz)", [userId, "2026-01-15T00:00:00Z"]);
    const record = (drafts: UsageLogEntryDraft[]) =>
      service.services.usageLog.recordBatch(drafts.map((draft) => ({ kind: "generation" as const, subject: bed.subjects.completed, draft })));
    return { userId, record };
  }

  /** Publishes while no consumer runs, so the next start pulls everything in one request. */
  async function publishWhileStopped(publish: () => Promise<void>, prepare?: (service: UsageService) => Promise<unknown>): Promise<UsageService> {
    const first = await bed.start();
    if (prepare) await prepare(first);
    await first.stop();
    await publish();
    return bed.start();
  }

  it("records a pulled batch in one transaction, a duplicate inside it once, derived tables equal to the log", async () => {
    const users = [newId(), newId(), newId()];
    const events = Array.from({ length: 30 }, (_, i) =>
      i % 5 === 4 ? { failed: failedEvent(users[i % 3]!) } : { completed: completedEvent(users[i % 3]!, { credits: BigInt(i + 1) }) },
    );
    const copied = events[0]!.completed!;
    const service = await publishWhileStopped(async () => {
      for (const e of events) await (e.completed ? bed.publishCompleted(e.completed) : bed.publishFailed(e.failed!));
      // Another Nats-Msg-Id: the stream keeps both copies, so the batch holds the event twice.
      await bed.publishCompleted(copied, `${copied.eventId}-copy`);
    });
    const rows = await eventually(async () => {
      const found = await sql<{ event_id: string; tx: string }>(service, "SELECT event_id, xmin::text AS tx FROM usage_log WHERE user_id = ANY (?::uuid[])", [`{${users.join(",")}}`]);
      return found.length >= 30 ? found : undefined;
    });
    expect(rows).toHaveLength(30);
    expect(new Set(rows.map((r) => r.event_id)).size).toBe(30);
    // One transaction wrote all 30 entries.
    expect(new Set(rows.map((r) => r.tx)).size).toBe(1);
    const inbox = await sql<{ n: number }>(service, "SELECT count(*)::int AS n FROM processed_events WHERE event_id = ?", [copied.eventId]);
    expect(inbox[0]!.n).toBe(1);
    const completedCredits = events.filter((e) => e.completed && e.completed.userId === users[0]).reduce((sum, e) => sum + e.completed!.credits, 0n);
    const stats = await getUserStats(service.orm, users[0]!);
    expect(stats.totalCreditsSpent).toBe(completedCredits);
    expect(stats.totalGenerations + stats.totalFailed).toBe(10n);
    expect(await reconcileUserStats(service.orm)).toEqual([]);
    expect(await service.services.stats.reconcileAnalytics()).toEqual([]);
    // Every message acked: nothing left for the consumer.
    await service.stop();
  });

  it("isolates an event the database refuses: the rest of its batch commits, it alone is dead-lettered", async () => {
    const userId = newId();
    const good = Array.from({ length: 8 }, () => completedEvent(userId));
    const bad = completedEvent(userId, { provider: "refused-by-test" });
    const service = await publishWhileStopped(async () => {
      for (const e of good.slice(0, 4)) await bed.publishCompleted(e);
      await bed.publishCompleted(bad);
      for (const e of good.slice(4)) await bed.publishCompleted(e);
      // A rule the database enforces (check_violation, a permanent failure) that only `bad` breaks.
    }, (first) => sql(first, "ALTER TABLE usage_log ADD CONSTRAINT test_refused_provider CHECK (provider <> 'refused-by-test') NOT VALID"));
    try {
      const letters = await eventually(async () => {
        const found = await sql<{ error: string }>(service, "SELECT error FROM dead_letters WHERE error LIKE '%test_refused_provider%'");
        return found.length > 0 ? found : undefined;
      }, 15_000);
      expect(letters).toHaveLength(1);
      const logged = await eventually(async () => {
        const found = await sql<{ event_id: string }>(service, "SELECT event_id FROM usage_log WHERE user_id = ?", [userId]);
        return found.length >= 8 ? found : undefined;
      });
      expect(logged.map((r) => r.event_id).sort()).toEqual(good.map((e) => e.eventId).sort());
      expect((await getUserStats(service.orm, userId)).totalGenerations).toBe(8n);
      expect(await reconcileUserStats(service.orm, userId)).toEqual([]);
    } finally {
      await sql(service, "ALTER TABLE usage_log DROP CONSTRAINT test_refused_provider");
      await service.stop();
    }
  });

  it("writes a batch's counter rows once: a missing row counted from the log plus the batch, a stored one moved by the batch", async () => {
    const service = await bed.start();
    try {
      const user = await proUser(service);
      const userId = user.userId;
      const record = (credits: bigint[]) => user.record(credits.map((c) => usageLogEntryFromCompleted(completedEvent(userId, { credits: c }))));
      const counters = async () => {
        const rows = await sql<{ generations: string; credits: string; day_generations: string; tx: string; day_tx: string }>(
          service,
          `SELECT p.generations::text, p.credits::text, d.generations::text AS day_generations, p.xmin::text AS tx, d.xmin::text AS day_tx
             FROM period_usage p JOIN daily_usage d USING (subject_id) WHERE p.subject_id = ?`,
          [userId],
        );
        expect(rows).toHaveLength(1);
        const entries = await sql<{ tx: string }>(service, "SELECT DISTINCT xmin::text AS tx FROM usage_log WHERE user_id = ? ORDER BY 1", [userId]);
        return { ...rows[0]!, lastBatch: rows[0]!.tx === rows[0]!.day_tx && entries.some((e) => e.tx === rows[0]!.tx) };
      };
      await record([3n, 3n]);
      expect(await counters()).toMatchObject({ generations: "2", credits: "6", day_generations: "2", lastBatch: true });
      // Counter rows are derived: dropped, the next batch counts them again from the log (2 entries) plus its own 3.
      await sql(service, "DELETE FROM period_usage WHERE subject_id = ?", [userId]);
      await sql(service, "DELETE FROM daily_usage WHERE subject_id = ?", [userId]);
      await record([4n, 4n, 4n]);
      expect(await counters()).toMatchObject({ generations: "5", credits: "18", day_generations: "5", lastBatch: true });
      // Stored rows: moved by the batch only.
      await record([5n]);
      expect(await counters()).toMatchObject({ generations: "6", credits: "23", day_generations: "6", lastBatch: true });
      expect(await service.services.stats.reconcileCounters(userId)).toEqual([]);
    } finally {
      await service.stop();
    }
  });

  it("moves stored monthly analytics by one key and by several, adds new keys and plans, equal to the log", async () => {
    const service = await bed.start();
    try {
      const { userId, record } = await proUser(service);
      const at = new Date();
      const completed = (overrides: Parameters<typeof completedEvent>[1]) => usageLogEntryFromCompleted(completedEvent(userId, { occurredAt: at, ...overrides }));
      const failed = (overrides: Parameters<typeof failedEvent>[1]) => usageLogEntryFromFailed(failedEvent(userId, { occurredAt: at, ...overrides }));
      const month = async () => (await service.services.stats.monthlyAnalytics(userId, 1))[0]!;
      // A new month row, then: the same keys again (one key each); a new input type and provider (one key, not stored yet);
      // several keys in one batch (text and photo, two providers, a failure); the subject's plan changes.
      await record([completed({ inputType: "photo", provider: "builtin-renderer" })]);
      await record([completed({ inputType: "photo", provider: "builtin-renderer" }), completed({ inputType: "photo", provider: "builtin-renderer" })]);
      await record([completed({ inputType: "text", provider: "external" })]);
      await record([completed({ inputType: "text", provider: "builtin-renderer" }), failed({ inputType: "photo", provider: "external" })]);
      await sql(service, "UPDATE subjects SET plan = 'free' WHERE id = ?", [userId]);
      await record([completed({ inputType: "photo", provider: "builtin-renderer" })]);
      expect(await service.services.stats.reconcileAnalytics(userId)).toEqual([]);
      expect(await month()).toMatchObject({
        generations: 6n, failed: 1n,
        byInputType: { photo: { completed: 4n, failed: 1n }, text: { completed: 2n, failed: 0n } },
        byProvider: { "builtin-renderer": { completed: 5n, failed: 0n }, external: { completed: 1n, failed: 1n } },
        byClassification: { original: { completed: 6n, failed: 1n } },
        plans: ["free", "pro"], planChanged: true,
      });
    } finally {
      await service.stop();
    }
  });

  it("records in lanes by user: each transaction holds one lane's users, a user's entries commit in arrival order, derived tables equal to the log", async () => {
    const lanes = 2;
    const users = Array.from({ length: 12 }, () => newId());
    // 240 events, users interleaved, each user's events in arrival (and occurred_at) order.
    const base = Date.UTC(2026, 11, 6, 12);
    const events = Array.from({ length: 240 }, (_, i) => ({ n: i, e: completedEvent(users[i % users.length]!, { occurredAt: new Date(base + i * 1000), credits: BigInt(1 + (i % 4)) }) }));
    // The durable consumer exists (a first start made it); nothing consumes while these are published.
    await (await bed.start()).stop();
    for (const { e } of events) await bed.publishCompleted(e);
    const laned = await bed.start({ CONSUMER_CHUNKS_IN_FLIGHT: lanes, CONSUMER_BATCH_SIZE: 1_000 });
    try {
      const rows = await eventually(async () => {
        const found = await sql<{ event_id: string; user_id: string; tx: string }>(laned,
          "SELECT event_id, user_id, xmin::text AS tx FROM usage_log WHERE user_id = ANY (?::uuid[])", [`{${users.join(",")}}`]);
        return found.length >= events.length ? found : undefined;
      });
      expect(rows).toHaveLength(events.length);
      const laneOfUser = (userId: string) => laneOf({ decoded: { event: { kind: "generation", subject: "", draft: usageLogEntryFromCompleted(completedEvent(userId)) } } }, lanes);
      expect(new Set(users.map(laneOfUser)).size).toBe(lanes);
      const byEvent = new Map(rows.map((r) => [r.event_id, r]));
      const lanesOfTx = new Map<string, Set<number>>();
      for (const r of rows) lanesOfTx.set(r.tx, (lanesOfTx.get(r.tx) ?? new Set()).add(laneOfUser(r.user_id)));
      // Every transaction is one lane's: the lanes recorded apart.
      expect([...lanesOfTx.values()].every((l) => l.size === 1)).toBe(true);
      expect(new Set([...lanesOfTx.values()].map((l) => [...l][0])).size).toBe(lanes);
      // A user's entries committed in arrival order (transaction ids never go back along it).
      for (const userId of users) {
        const txs = events.filter(({ e }) => e.userId === userId).map(({ e }) => Number(byEvent.get(e.eventId)!.tx));
        expect(txs).toEqual([...txs].sort((a, b) => a - b));
      }
      expect(await reconcileUserStats(laned.orm)).toEqual([]);
      expect(await laned.services.stats.reconcileAll()).toEqual({ differencesTotal: 0, differences: [] });
    } finally {
      await laned.stop();
    }
  });

  it("creates the usage log's partitions for the current month and the months ahead at start", async () => {
    // The migration made the current month and three ahead: the fourth and fifth are the runner's.
    const service = await bed.start({ USAGE_LOG_PARTITIONS_AHEAD_MONTHS: 5 });
    const now = new Date();
    const expected = [0, 1, 2, 3, 4, 5].map((k) => {
      const month = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + k, 1));
      return `usage_log_${month.getUTCFullYear()}_${String(month.getUTCMonth() + 1).padStart(2, "0")}`;
    });
    const names = await eventually(async () => {
      const found = (await service.services.partitions.list()).map((p) => p.partition);
      return expected.every((name) => found.includes(name)) ? found : undefined;
    });
    expect(names).toContain("usage_log_default");
    await service.stop();
  });
});

/**
 * The credit ledger against a small model, property-based (fast-check, model-based commands):
 * random sequences of grants (with priorities and expiries), holds, captures (full and
 * partial), releases, extensions, clock advances (grant expiry), voids and idempotent retries
 * run against the real credits service (gRPC, real PostgreSQL, injected clock), each sequence
 * on a fresh account. After every step: the balance equals the model's (trial, tokens, held),
 * and so does every grant's remaining amount (the consumption order and the capture split);
 * available never goes negative; everything granted is available, held, captured, expired or
 * written off; the ledger replays to the stored balances (the harness's `checkInvariants`,
 * INV-1, INV-2); and at the end of a sequence every hold's status is the model's (INV-3: each
 * ended exactly once); at the end the credits `Reconcile` RPC finds no difference in any account
 * or grant. `LEDGER_PROPERTY_RUNS` sets the number of sequences (default 1,000;
 * `npm run test:long` runs 10,000) and `LEDGER_PROPERTY_SEED` replays a failing seed.
 */
import fc from "fast-check";
import { credits } from "@tally/contracts";
import { newId } from "@tally/platform";
import { reasonOf, startHarness, type Harness } from "./harness";

const RUNS = Number(process.env.LEDGER_PROPERTY_RUNS ?? 1000);
const SEED = process.env.LEDGER_PROPERTY_SEED ? Number(process.env.LEDGER_PROPERTY_SEED) : Date.now() % 2 ** 31;
const DAY_MS = 86_400_000;
/** Few trial credits, so holds soon reach the grants and their order matters. */
const TRIAL_CREDITS = 3n;
const KIND_RANK = { trial: 1, purchased: 2, promotional: 3 } as const;
type Kind = keyof typeof KIND_RANK;

interface ModelGrant {
  id: string;
  kind: Kind;
  priority: number;
  amount: bigint;
  remaining: bigint;
  expiresAtMs: number | null;
  sequence: number;
  voided: boolean;
}

interface ModelHold {
  id: string;
  amount: bigint;
  /** Credits taken, per grant, in the order taken. */
  taken: { grant: ModelGrant; amount: bigint }[];
  status: "active" | "captured" | "released";
}

interface Model {
  grants: ModelGrant[];
  holds: ModelHold[];
  expired: bigint;
  writtenOff: bigint;
  captured: bigint;
  /** The last mutating call, for a retry with its request id. */
  last?: { call: (requestId: string) => Promise<unknown>; requestId: string; answer: unknown };
}

interface Real {
  h: Harness;
  accountId: string;
}

let nowMs = Date.now();
let h: Harness;

beforeAll(async () => {
  h = await startHarness("credits_properties", { HOLD_EXPIRY_SWEEP_INTERVAL_MS: "3600000", TRIAL_CREDITS: String(TRIAL_CREDITS) }, { now: () => new Date(nowMs) });
});
afterAll(async () => {
  await h?.close();
});

/** The model's grant expiry: every grant past its expiry is written off (the service does it lazily before holds, reads and after give-backs). */
function expireDue(model: Model): void {
  for (const grant of model.grants) {
    if (grant.expiresAtMs !== null && grant.expiresAtMs <= nowMs && grant.remaining > 0n) {
      model.expired += grant.remaining;
      grant.remaining = 0n;
    }
  }
}

/** The consumption order the service promises: priority, expiry (none last), kind, age. */
function consumptionOrder(a: ModelGrant, b: ModelGrant): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const [ea, eb] = [a.expiresAtMs ?? Infinity, b.expiresAtMs ?? Infinity];
  if (ea !== eb) return ea - eb;
  if (KIND_RANK[a.kind] !== KIND_RANK[b.kind]) return KIND_RANK[a.kind] - KIND_RANK[b.kind];
  return a.sequence - b.sequence;
}

const available = (model: Model) => model.grants.reduce((sum, g) => sum + g.remaining, 0n);

/** Gives `amount` of a hold's takings back, from the grants taken last (a release gives all). */
function giveBack(model: Model, hold: ModelHold, amount: bigint): void {
  let rest = amount;
  for (const part of [...hold.taken].reverse()) {
    const back = part.amount < rest ? part.amount : rest;
    part.grant.remaining += back;
    rest -= back;
  }
  expireDue(model);
}

type Command = fc.AsyncCommand<Model, Real>;

let steps = 0;

/**
 * A command from a name and a body (every command can run in every state; the body knows the
 * expected outcome), followed by the check of every step (`checkStep`).
 */
const command = (name: string, body: (model: Model, real: Real) => Promise<void>): Command => ({
  check: () => true,
  run: async (model, real) => {
    await body(model, real);
    steps += 1;
    await checkStep(model, real);
  },
  toString: () => name,
});

const grantCommand = fc
  .record({ kind: fc.constantFrom<Kind>("purchased", "promotional"), amount: fc.integer({ min: 1, max: 6 }), priority: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined }), expiresInDays: fc.option(fc.integer({ min: 1, max: 2 }), { nil: undefined }) })
  .map((g) =>
    command(`grant(${JSON.stringify(g)})`, async (model, { h, accountId }) => {
      const expiresAtMs = g.expiresInDays === undefined ? null : nowMs + g.expiresInDays * DAY_MS;
      const call = (requestId: string) =>
        h.call.createGrant({ requestId, accountId, kind: g.kind === "purchased" ? credits.GrantKind.GRANT_KIND_PURCHASED : credits.GrantKind.GRANT_KIND_PROMOTIONAL, amount: BigInt(g.amount), priority: g.priority, expiresAt: expiresAtMs === null ? undefined : new Date(expiresAtMs) });
      const requestId = newId();
      const answer = await call(requestId);
      model.grants.push({ id: answer.grant!.id, kind: g.kind, priority: g.priority ?? KIND_RANK[g.kind], amount: BigInt(g.amount), remaining: BigInt(g.amount), expiresAtMs, sequence: model.grants.length, voided: false });
      model.last = { call, requestId, answer };
    }),
  );

const holdCommand = fc.integer({ min: 1, max: 5 }).map((amount) =>
  command(`hold(${amount})`, async (model, { h, accountId }) => {
    const call = (requestId: string) => h.call.createHold({ requestId, accountId, amount: BigInt(amount), generationId: `gen-${requestId}` });
    const requestId = newId();
    if (available(model) < BigInt(amount)) {
      expect(await reasonOf(call(requestId))).toBe("insufficient_credits");
      return;
    }
    const answer = await call(requestId);
    const taken: ModelHold["taken"] = [];
    let rest = BigInt(amount);
    for (const grant of model.grants.filter((g) => g.remaining > 0n).sort(consumptionOrder)) {
      if (rest === 0n) break;
      const part = grant.remaining < rest ? grant.remaining : rest;
      grant.remaining -= part;
      rest -= part;
      taken.push({ grant, amount: part });
    }
    const trial = taken.filter((t) => t.grant.kind === "trial").reduce((sum, t) => sum + t.amount, 0n);
    expect(answer.hold!.trialAmount).toBe(trial);
    model.holds.push({ id: answer.hold!.id, amount: BigInt(amount), taken, status: "active" });
    model.last = { call, requestId, answer };
  }),
);

/** The `index`-th hold (modulo how many there are); undefined when there is none. */
const holdAt = (model: Model, index: number): ModelHold | undefined => (model.holds.length === 0 ? undefined : model.holds[index % model.holds.length]);

/** A command on a hold picked by index; it does nothing while the account has no hold. */
const onHold = (name: string, body: (model: Model, real: Real, hold: ModelHold) => Promise<void>) =>
  fc.nat().map((index) =>
    command(`${name}(#${index})`, async (model, real) => {
      const hold = holdAt(model, index);
      if (hold) await body(model, real, hold);
    }),
  );

const captureCommand = fc.tuple(fc.nat(), fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined })).map(([index, partial]) =>
  command(`capture(#${index}${partial ? `, ${partial}` : ""})`, async (model, { h }) => {
    const hold = holdAt(model, index);
    if (!hold) return;
    const amount = partial === undefined ? undefined : BigInt(partial) > hold.amount ? hold.amount : BigInt(partial);
    const call = (requestId: string) => h.call.captureHold({ requestId, holdId: hold.id, amount });
    const requestId = newId();
    if (hold.status !== "active") {
      expect(await reasonOf(call(requestId))).toBe("hold_not_active");
      return;
    }
    const answer = await call(requestId);
    const charged = amount ?? hold.amount;
    hold.status = "captured";
    model.captured += charged;
    if (charged < hold.amount) giveBack(model, hold, hold.amount - charged);
    model.last = { call, requestId, answer };
  }),
);

const releaseCommand = onHold("release", async (model, { h }, hold) => {
  const call = (requestId: string) => h.call.releaseHold({ requestId, holdId: hold.id, reason: "job failed" });
  const requestId = newId();
  if (hold.status !== "active") {
    expect(await reasonOf(call(requestId))).toBe("hold_not_active");
    return;
  }
  const answer = await call(requestId);
  hold.status = "released";
  giveBack(model, hold, hold.amount);
  model.last = { call, requestId, answer };
});

const extendCommand = onHold("extend", async (_model, { h }, hold) => {
  const call = h.call.extendHold({ holdId: hold.id, ttlMs: 7_200_000n });
  if (hold.status !== "active") expect(await reasonOf(call)).toBe("hold_not_active");
  else expect((await call).hold!.status).toBe(credits.HoldStatus.HOLD_STATUS_ACTIVE);
});

const voidCommand = fc.nat().map((index) =>
  command(`void(#${index})`, async (model, { h, accountId }) => {
    if (model.grants.length === 0) return;
    const grant = model.grants[index % model.grants.length];
    const call = (requestId: string) => h.call.voidGrant({ requestId, accountId, grantId: grant.id });
    const requestId = newId();
    if (!grant.voided && grant.remaining !== grant.amount) {
      expect(await reasonOf(call(requestId))).toBe("conflict");
      return;
    }
    const answer = await call(requestId);
    if (!grant.voided) {
      grant.voided = true;
      model.writtenOff += grant.remaining;
      grant.remaining = 0n;
    }
    model.last = { call, requestId, answer };
  }),
);

const advanceCommand = fc.integer({ min: 1, max: 3 }).map((days) =>
  command(`advance(${days}d)`, async (model) => {
    nowMs += days * DAY_MS;
    expireDue(model);
  }),
);

/** Sends the last mutating call again with its request id: the first answer, and nothing moves. */
const retryCommand = fc.constant(
  command("retry", async (model) => {
    if (!model.last) return;
    expect(await model.last.call(model.last.requestId)).toEqual(model.last.answer);
  }),
);

/** After every step: the balance is the model's, and the stored rows keep INV-1 and INV-2. */
async function checkStep(model: Model, { h, accountId }: Real): Promise<void> {
  // The balance read first: it writes off what has expired, which the stored rows must then show.
  const { balance } = await h.call.getBalance({ accountId });
  const trial = model.grants.filter((g) => g.kind === "trial").reduce((sum, g) => sum + g.remaining, 0n);
  const held = model.holds.filter((hold) => hold.status === "active").reduce((sum, hold) => sum + hold.amount, 0n);
  expect(balance).toEqual({ trialCredits: trial, tokenCredits: available(model) - trial, heldCredits: held, availableCredits: available(model) });
  const stored = await h.sql.query("SELECT captured_credits, expired_credits, written_off_credits FROM accounts WHERE id = $1", [accountId]);
  const row = stored.rows[0];
  expect([BigInt(row.captured_credits), BigInt(row.expired_credits), BigInt(row.written_off_credits)]).toEqual([model.captured, model.expired, model.writtenOff]);
  // Each grant keeps what the model says (the consumption order and the capture split decide it).
  const grants = await h.sql.query("SELECT id, remaining_amount FROM grants WHERE account_id = $1", [accountId]);
  expect(Object.fromEntries(grants.rows.map((g) => [g.id, BigInt(g.remaining_amount)]))).toEqual(Object.fromEntries(model.grants.map((g) => [g.id, g.remaining])));
  await h.checkInvariants(accountId);
}

it(`keeps the ledger equal to a model over ${RUNS} random sequences (seed ${SEED})`, async () => {
  // Grants and holds weigh more, so that sequences hold several grants whose order matters.
  const commands = [grantCommand, grantCommand, grantCommand, holdCommand, holdCommand, captureCommand, releaseCommand, extendCommand, voidCommand, advanceCommand, retryCommand];
  let sequences = 0;
  await fc.assert(
    fc.asyncProperty(fc.commands(commands, { maxCommands: 12 }), async (sequence) => {
      const accountId = await h.newAccount();
      const trialGrantId = (await h.sql.query("SELECT id FROM grants WHERE account_id = $1", [accountId])).rows[0].id as string;
      const model: Model = {
        grants: [{ id: trialGrantId, kind: "trial", priority: 1, amount: TRIAL_CREDITS, remaining: TRIAL_CREDITS, expiresAtMs: null, sequence: -1, voided: false }],
        holds: [],
        expired: 0n,
        writtenOff: 0n,
        captured: 0n,
      };
      const real = { h, accountId };
      await fc.asyncModelRun(() => ({ model, real }), sequence);
      const stored = (await h.sql.query("SELECT id, status FROM holds WHERE account_id = $1", [accountId])).rows;
      expect(Object.fromEntries(stored.map((row) => [row.id, row.status]))).toEqual(Object.fromEntries(model.holds.map((hold) => [hold.id, hold.status])));
      sequences += 1;
    }),
    { numRuns: RUNS, seed: SEED },
  );
  // The service's own reconciliation (the same equalities, over every account and grant) agrees.
  expect(await h.call.reconcile()).toEqual({ differencesTotal: 0n, differences: [] });
  // eslint-disable-next-line no-console
  console.log(`ledger properties: ${sequences} sequences, ${steps} steps checked against the model (seed ${SEED})`);
}, 3_600_000);

/**
 * Test harness: the credits service started in-process on a fresh database and a free port,
 * a real gRPC client, and direct SQL to check the invariants against the stored rows.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Client } from "pg";
import { credits } from "@tally/contracts";
import { callUnary, createGrpcClient, createLogger, DomainError, getFreePort, newId } from "@tally/platform";
import { createTestDatabase } from "@tally/platform/src/testing";
import { startCreditsService, type CreditsServiceOptions, type RunningCreditsService } from "../src/app";
import { loadCreditsConfig } from "../src/config";

const CALL_TIMEOUT_MS = 15_000;

export interface Harness {
  client: credits.CreditsServiceClient;
  running: RunningCreditsService;
  sql: Client;
  call: Calls;
  /** Creates an account with the default plan's trial credits (10) and returns its id. */
  newAccount(): Promise<string>;
  /** Adds a grant and returns its id. */
  grant(accountId: string, kind: credits.GrantKind, amount: bigint, expiresAt?: Date): Promise<string>;
  /** INV-1 and INV-2 over every account (or only `accountId`), from the stored rows. */
  checkInvariants(accountId?: string): Promise<void>;
  close(): Promise<void>;
}

/** The RPCs with request defaults (a fresh request_id, empty fields) and a deadline. */
interface Calls {
  createAccount(r: Partial<credits.CreateAccountRequest>): Promise<credits.CreateAccountResponse>;
  authenticate(r: Partial<credits.AuthenticateRequest>): Promise<credits.AuthenticateResponse>;
  getAccount(r: credits.GetAccountRequest): Promise<credits.GetAccountResponse>;
  getBalance(r: credits.GetBalanceRequest): Promise<credits.GetBalanceResponse>;
  createGrant(r: Partial<credits.CreateGrantRequest>): Promise<credits.CreateGrantResponse>;
  voidGrant(r: Partial<credits.VoidGrantRequest>): Promise<credits.VoidGrantResponse>;
  extendHold(r: Partial<credits.ExtendHoldRequest>): Promise<credits.ExtendHoldResponse>;
  createHold(r: Partial<credits.CreateHoldRequest>): Promise<credits.CreateHoldResponse>;
  captureHold(r: Partial<credits.CaptureHoldRequest>): Promise<credits.CaptureHoldResponse>;
  releaseHold(r: Partial<credits.ReleaseHoldRequest>): Promise<credits.ReleaseHoldResponse>;
  listLedgerEntries(r: Partial<credits.ListLedgerEntriesRequest>): Promise<credits.ListLedgerEntriesResponse>;
  ensureGuestAccount(r: credits.EnsureGuestAccountRequest): Promise<credits.EnsureGuestAccountResponse>;
  setPlan(r: Partial<credits.SetPlanRequest>): Promise<credits.SetPlanResponse>;
  setBillingAnchor(r: Partial<credits.SetBillingAnchorRequest>): Promise<credits.SetBillingAnchorResponse>;
  setRole(r: Partial<credits.SetRoleRequest>): Promise<credits.SetRoleResponse>;
  deleteAccount(r: Partial<credits.DeleteAccountRequest>): Promise<credits.DeleteAccountResponse>;
  reconcile(): Promise<credits.ReconcileResponse>;
}

/** Writes a plans document (docs/plans.md) to a fresh temporary file and returns its path, for PLANS_FILE. */
export function writePlansFile(document: unknown, name = "plans.json"): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), "tally-plans-")), name);
  writeFileSync(file, typeof document === "string" ? document : JSON.stringify(document));
  return file;
}

/** Starts the service with `env` over test defaults (silent logs, cheap password hashing) and `options` (e.g. an injected clock). */
export async function startHarness(prefix: string, env: Record<string, string> = {}, options: CreditsServiceOptions = {}): Promise<Harness> {
  const database = await createTestDatabase(prefix);
  const config = loadCreditsConfig({
    DATABASE_URL: database.url,
    GRPC_HOST: "127.0.0.1",
    GRPC_PORT: String(await getFreePort()),
    LOG_LEVEL: "silent",
    DATABASE_POOL_MAX: "10",
    PASSWORD_HASH_MEMORY_KIB: "1024",
    PASSWORD_HASH_TIME_COST: "1",
    ...env,
  });
  const running = await startCreditsService(config, createLogger("credits-test", config.LOG_LEVEL), options);
  const client = createGrpcClient(credits.CreditsServiceClient, `127.0.0.1:${running.grpcPort}`);
  const sql = new Client({ connectionString: database.url });
  await sql.connect();

  const call = callsOn(client);

  return {
    client,
    running,
    sql,
    call,
    async newAccount() {
      const { account } = await call.createAccount({ email: `user-${newId()}@example.com`, password: "correct horse battery" });
      return account!.id;
    },
    async grant(accountId, kind, amount, expiresAt) {
      const { grant } = await call.createGrant({ accountId, kind, amount, expiresAt });
      return grant!.id;
    },
    checkInvariants: (accountId?: string) => checkInvariants(sql, accountId),
    async close() {
      client.close();
      await running.stop();
      await sql.end();
      await database.drop();
    },
  };
}

/** The RPCs on `client`, with request defaults and a deadline. */
function callsOn(client: credits.CreditsServiceClient): Calls {
  const options = { timeoutMs: CALL_TIMEOUT_MS };
  const rid = () => ({ requestId: newId() });
  return {
    createAccount: (r) =>
      callUnary(client.createAccount.bind(client), { ...rid(), email: "", password: "", plan: "", role: 0, adoptGuestId: "", ...r }, options),
    authenticate: (r) => callUnary(client.authenticate.bind(client), { ...rid(), email: "", password: "", ...r }, options),
    getAccount: (r) => callUnary(client.getAccount.bind(client), r, options),
    getBalance: (r) => callUnary(client.getBalance.bind(client), r, options),
    createGrant: (r) => callUnary(client.createGrant.bind(client), { ...rid(), accountId: "", kind: 0, amount: 0n, reference: "", ...r } as credits.CreateGrantRequest, options),
    voidGrant: (r) => callUnary(client.voidGrant.bind(client), { ...rid(), accountId: "", grantId: "", reason: "", ...r } as credits.VoidGrantRequest, options),
    extendHold: (r) => callUnary(client.extendHold.bind(client), { ...rid(), holdId: "", ttlMs: 0n, ...r }, options),
    createHold: (r) =>
      callUnary(client.createHold.bind(client), { ...rid(), accountId: "", generationId: newId(), amount: 0n, ttlMs: 0n, ...r }, options),
    captureHold: (r) => callUnary(client.captureHold.bind(client), { ...rid(), holdId: "", ...r }, options),
    releaseHold: (r) => callUnary(client.releaseHold.bind(client), { ...rid(), holdId: "", reason: "", ...r }, options),
    listLedgerEntries: (r) =>
      callUnary(client.listLedgerEntries.bind(client), { accountId: "", pageSize: 0, pageToken: "", ...r }, options),
    ensureGuestAccount: (r) => callUnary(client.ensureGuestAccount.bind(client), r, options),
    setPlan: (r) => callUnary(client.setPlan.bind(client), { ...rid(), accountId: "", plan: "", ...r }, options),
    setBillingAnchor: (r) => callUnary(client.setBillingAnchor.bind(client), { ...rid(), accountId: "", ...r }, options),
    setRole: (r) => callUnary(client.setRole.bind(client), { ...rid(), email: "", role: 0, ...r }, options),
    deleteAccount: (r) => callUnary(client.deleteAccount.bind(client), { ...rid(), accountId: "", ...r }, options),
    reconcile: () => callUnary(client.reconcile.bind(client), {}, options),
  };
}

/** INV-1 and INV-2 over every account, from the stored rows (the ledger replays to the stored balances). */
async function checkInvariants(sql: Client, accountId?: string): Promise<void> {
  const { rows } = await sql.query<{
    id: string;
    available: string;
    held: string;
    captured: string;
    expired: string;
    written_off: string;
    granted: string;
    remaining: string;
    active_held: string;
    ledger_available: string;
    ledger_held: string;
    ledger_captured: string;
    ledger_expired: string;
    ledger_written_off: string;
    last_balance_after: string | null;
    last_held_after: string | null;
  }>(`
    SELECT a.id, a.available_credits AS available, a.held_credits AS held, a.captured_credits AS captured,
           a.expired_credits AS expired, a.written_off_credits AS written_off,
           (SELECT coalesce(sum(amount), 0) FROM grants g WHERE g.account_id = a.id) AS granted,
           (SELECT coalesce(sum(remaining_amount), 0) FROM grants g WHERE g.account_id = a.id) AS remaining,
           (SELECT coalesce(sum(amount), 0) FROM holds h WHERE h.account_id = a.id AND h.status = 'active') AS active_held,
           (SELECT coalesce(sum(amount), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS ledger_available,
           (SELECT coalesce(sum(held_change), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS ledger_held,
           (SELECT coalesce(sum(captured_change), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS ledger_captured,
           (SELECT coalesce(sum(expired_change), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS ledger_expired,
           (SELECT coalesce(sum(written_off_change), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS ledger_written_off,
           (SELECT balance_after FROM ledger_entries l WHERE l.account_id = a.id ORDER BY position DESC LIMIT 1) AS last_balance_after,
           (SELECT held_after FROM ledger_entries l WHERE l.account_id = a.id ORDER BY position DESC LIMIT 1) AS last_held_after
    FROM accounts a WHERE $1::uuid IS NULL OR a.id = $1`, [accountId ?? null]);
  for (const row of rows) {
    const n = (v: string | null) => BigInt(v ?? 0);
    const context = `account ${row.id}: ${JSON.stringify(row)}`;
    expect({ context, ok: n(row.available) >= 0n && n(row.held) >= 0n }).toEqual({ context, ok: true });
    // Conservation: sum of grants = available + held + captured + expired + written off.
    expect({ context, granted: n(row.granted) }).toEqual({
      context,
      granted: n(row.available) + n(row.held) + n(row.captured) + n(row.expired) + n(row.written_off),
    });
    expect({ context, remaining: n(row.remaining), activeHeld: n(row.active_held) }).toEqual({
      context,
      remaining: n(row.available),
      activeHeld: n(row.held),
    });
    // The ledger replays to the stored balances, and its last entry states them.
    expect({
      context,
      available: n(row.ledger_available),
      held: n(row.ledger_held),
      captured: n(row.ledger_captured),
      expired: n(row.ledger_expired),
      writtenOff: n(row.ledger_written_off),
      lastBalanceAfter: n(row.last_balance_after),
      lastHeldAfter: n(row.last_held_after),
    }).toEqual({
      context,
      available: n(row.available),
      held: n(row.held),
      captured: n(row.captured),
      expired: n(row.expired),
      writtenOff: n(row.written_off),
      lastBalanceAfter: n(row.available),
      lastHeldAfter: n(row.held),
    });
  }
}

/** The reason of a rejected call (fails the test when the call succeeds). */
export async function reasonOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return error.reason;
    throw error;
  }
  throw new Error("expected the call to fail");
}

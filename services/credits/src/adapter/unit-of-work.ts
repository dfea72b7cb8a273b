import { createUnitOfWork, SqlIdempotencyStore, SqlOutboxStore, type Orm, type OutboxStore, type UnitOfWork } from "@tally/platform";
import type { CreditsStores, CreditsUnitOfWork } from "../domain/ports";
import { SqlAccountEventStore } from "./account-event-store";
import { SqlAccountStore } from "./account-store";
import { SqlGrantStore } from "./grant-store";
import { SqlHoldOperationStore } from "./hold-operation-store";
import { SqlHoldStore } from "./hold-store";
import { SqlLedgerStore } from "./ledger-store";
import { SqlReconciliationStore } from "./reconciliation-store";

export interface CreditsUnitOfWorkOptions {
  /** NATS_SUBJECT_PREFIX (default "tally"): `account.deleted` events go on `<prefix>.account.deleted`. */
  subjectPrefix?: string;
}

/** The credits stores in SQL over `orm`, bound per call to one transaction or to none. */
export const createCreditsUnitOfWork = (orm: Orm, options: CreditsUnitOfWorkOptions = {}): CreditsUnitOfWork =>
  createUnitOfWork(orm, (sql) => ({
    holdOperations: new SqlHoldOperationStore(sql),
    accounts: new SqlAccountStore(sql),
    grants: new SqlGrantStore(sql),
    holds: new SqlHoldStore(sql),
    ledger: new SqlLedgerStore(sql),
    reconciliation: new SqlReconciliationStore(sql),
    accountEvents: new SqlAccountEventStore(sql, options.subjectPrefix ?? "tally"),
    idempotency: new SqlIdempotencyStore(sql),
  }));

/** The outbox alone, for the relay that publishes credits' events (INV-5, producer half). */
export const createCreditsOutboxUnitOfWork = (orm: Orm): UnitOfWork<{ outbox: OutboxStore }> =>
  createUnitOfWork(orm, (sql) => ({ outbox: new SqlOutboxStore(sql) }));

export type { CreditsStores };

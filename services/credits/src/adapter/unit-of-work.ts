import { createUnitOfWork, SqlIdempotencyStore, type Orm } from "@tally/platform";
import type { CreditsUnitOfWork } from "../domain/ports";
import { SqlAccountStore } from "./account-store";
import { SqlGrantStore } from "./grant-store";
import { SqlHoldStore } from "./hold-store";
import { SqlLedgerStore } from "./ledger-store";

/** The credits stores in SQL over `orm`, bound per call to one transaction or to none. */
export const createCreditsUnitOfWork = (orm: Orm): CreditsUnitOfWork =>
  createUnitOfWork(orm, (sql) => ({
    accounts: new SqlAccountStore(sql),
    grants: new SqlGrantStore(sql),
    holds: new SqlHoldStore(sql),
    ledger: new SqlLedgerStore(sql),
    idempotency: new SqlIdempotencyStore(sql),
  }));

import { createUnitOfWork, SqlIdempotencyStore, SqlOutboxStore, type Orm } from "@tally/platform";
import type { GenerationsUnitOfWork } from "../domain/ports";
import { SqlGenerationStore } from "./generation-store";

/** The generations stores over `orm`: each unit of work on its own EntityManager fork. */
export const createGenerationsUnitOfWork = (orm: Orm): GenerationsUnitOfWork =>
  createUnitOfWork(orm, (sql) => ({
    generations: new SqlGenerationStore(sql),
    outbox: new SqlOutboxStore(sql),
    idempotency: new SqlIdempotencyStore(sql),
  }));

import type { UsageUnitOfWork } from "../domain/ports";
import type { DeadLetter } from "../domain/types";

/** Messages that can never be processed: kept raw, so that none is lost. */
export class DeadLetterService {
  constructor(private readonly uow: UsageUnitOfWork) {}

  /** Stores a dead letter (one transaction). Errors: database errors propagate; the caller retries. */
  record(letter: DeadLetter): Promise<void> {
    return this.uow.inTransaction((stores) => stores.deadLetters.add(letter));
  }
}

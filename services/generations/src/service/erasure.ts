import type { GenerationsUnitOfWork } from "../domain/ports";

/** An `account.deleted` event (events.proto AccountDeleted), decoded. */
export interface AccountDeletedEvent {
  eventId: string;
  accountId: string;
}

/**
 * Erasure of a deleted account's personal data in the generations database. Credits refuses
 * to delete an account while it has active holds, so a deleted account has no pending or
 * processing generation left to cancel: erasure only blanks data, it never settles a job.
 */
export class ErasureService {
  constructor(private readonly uow: GenerationsUnitOfWork) {}

  /**
   * In one transaction: records the event id in the inbox and, the first time, erases the
   * prompt, photo URL, address, style and stored output of every generation of the account,
   * keeping ids, statuses, credits, costs and timestamps (INV-11). Exactly once in effect per
   * event id (INV-5): a redelivery answers `duplicate` and changes nothing. Answers how many
   * generations were erased.
   */
  async eraseAccount(subject: string, event: AccountDeletedEvent): Promise<{ duplicate: boolean; erased: number }> {
    return this.uow.inTransaction(async (stores) => {
      if (!(await stores.inbox.claim(event.eventId, subject))) return { duplicate: true, erased: 0 };
      return { duplicate: false, erased: await stores.generations.eraseUser(event.accountId) };
    });
  }
}

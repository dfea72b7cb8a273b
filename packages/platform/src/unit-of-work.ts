/**
 * The port through which a service's rules reach its stores. A service declares its stores as
 * interfaces in its own terms (`domain/ports.ts`) and receives a `UnitOfWork` of them; only its
 * adapter knows they are SQL over MikroORM (see `createUnitOfWork` in db.ts).
 */
export interface UnitOfWork<Stores> {
  /**
   * Runs `work` in one READ COMMITTED transaction with `stores` bound to it: commits when it
   * resolves, rolls back when it throws (the error is rethrown unchanged).
   */
  inTransaction<T>(work: (stores: Stores) => Promise<T>): Promise<T>;
  /**
   * Runs `work` with `stores` on a fresh connection scope and no transaction open: for plain
   * reads (each statement sees its own snapshot) and for steps that must hold no lock.
   */
  withoutTransaction<T>(work: (stores: Stores) => Promise<T>): Promise<T>;
}

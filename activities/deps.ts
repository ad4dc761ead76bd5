import type { Db } from '../src/db/pool';
import type { LedgerHooks } from '@sagaflow/toolkit/ledger';

export interface ActivityDeps {
  db: Db;
  paymentProviderUrl: string;
  carrierUrl: string;
  providerTimeoutMs: number;
  /**
   * Cap on calls to the payment provider per second, shared by every worker on this database
   * (the ledger's limiter, in PostgreSQL). Unset: no cap.
   */
  paymentsPerSecond?: number;
  /** Told of every duplicate answered from the ledger (a metric). */
  ledgerHooks?: LedgerHooks;
}

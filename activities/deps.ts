import type { Db } from '../src/db/pool';
import type { LedgerHooks } from '@sagaflow/toolkit/ledger';

export interface ActivityDeps {
  db: Db;
  paymentProviderUrl: string;
  carrierUrl: string;
  providerTimeoutMs: number;
  /** Told of every duplicate answered from the ledger (a metric). */
  ledgerHooks?: LedgerHooks;
}

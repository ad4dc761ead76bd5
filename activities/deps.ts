import type { Db } from '../src/db/pool';
import { createLedger, type Ledger, type LedgerHooks } from '@sagaflow/toolkit/ledger';

export interface ActivityDeps {
  db: Db;
  paymentProviderUrl: string;
  carrierUrl: string;
  providerTimeoutMs: number;
  /** Told of every duplicate answered from the ledger (a metric). */
  ledgerHooks?: LedgerHooks;
  /** The ledger the activities record through; by default the real one on `db`. */
  ledger?: Ledger;
}

export const ledgerOf = (deps: Pick<ActivityDeps, 'db' | 'ledgerHooks' | 'ledger'>): Ledger =>
  deps.ledger ?? createLedger(deps.db, deps.ledgerHooks);

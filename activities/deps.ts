import type { Db } from '../src/db/pool';

export interface ActivityDeps {
  db: Db;
  paymentProviderUrl: string;
  carrierUrl: string;
  providerTimeoutMs: number;
}

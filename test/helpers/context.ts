import { randomBytes } from 'node:crypto';
import { Client as PgClient } from 'pg';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { migrate } from '../../src/db/migrate';
import { createPool, quoteIdent, type Db } from '../../src/db/pool';
import { startCarrier } from '../../dev/services/carrier';
import { startPaymentProvider } from '../../dev/services/payment-provider';
import type { RunningService } from '../../dev/services/http';
import type { ActivityDeps } from '../../activities';
import type { OrderInput } from '../../workflows/order/types';
import { clientConnectionOptions } from '../../src/temporal-connect';
import type { DataConverter } from '@temporalio/common';
import { dataConverterFromEnv } from '../../src/codec/settings';

export const databaseUrl = (): string => {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: run the tests through jest (globalSetup sets it)');
  return url;
};

export const uniqueId = (prefix: string): string => `${prefix}-${randomBytes(5).toString('hex')}`;

/** Runs one statement on the test server on a connection of its own (schemas and databases come and go). */
async function adminQuery(sql: string): Promise<void> {
  const client = new PgClient({ connectionString: databaseUrl() });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * A fresh schema with all migrations applied (or, with `migrations: false`, empty: for a toolkit
 * test that creates its own tables); dropped by the returned cleanup.
 */
export async function createTestSchema(
  label: string,
  { migrations = true }: { migrations?: boolean } = {},
): Promise<{ db: Db; schema: string; drop(): Promise<void> }> {
  const schema = `t_${label}_${randomBytes(4).toString('hex')}`;
  if (migrations) await migrate(databaseUrl(), schema);
  else await adminQuery(`CREATE SCHEMA ${quoteIdent(schema)}`);
  const db = createPool({ connectionString: databaseUrl(), schema, max: 20 });
  return {
    db,
    schema,
    async drop() {
      await db.end();
      await adminQuery(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
    },
  };
}

/** A database of its own on the test server (for processes that migrate `public` themselves); dropped by the cleanup. */
export async function createTestDatabase(label: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${label}_${randomBytes(4).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${quoteIdent(name)}`);
  const url = new URL(databaseUrl());
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => adminQuery(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`) };
}

export interface Runnable {
  run(): Promise<void>;
  shutdown(): void;
  getState(): string;
}

export interface TestContext {
  db: Db;
  schema: string;
  payment: RunningService;
  carrier: RunningService;
  /** Encrypts with the run's key (SAGAFLOW_PAYLOAD_KEYS, made by the global setup), as createSagaWorker's default does. */
  client: Client;
  /** The payload codec's data converter the client uses: for workers built without createSagaWorker. */
  dataConverter: DataConverter;
  nativeConnection: NativeConnection;
  namespace: string;
  deps: ActivityDeps;
  /** Runs the worker until the returned stop is called. */
  startWorker(worker: Runnable): () => Promise<void>;
  close(): Promise<void>;
}

let runtimeInstalled = false;

/** Real PostgreSQL schema, real provider and carrier services, a client and a connection to the real server. */
export async function createTestContext(label: string): Promise<TestContext> {
  if (!runtimeInstalled) {
    runtimeInstalled = true;
    try {
      Runtime.install({ logger: new DefaultLogger('ERROR') });
    } catch {
      // Already installed by an earlier test file in this process.
    }
  }
  const address = process.env.TEMPORAL_ADDRESS;
  if (!address) throw new Error('TEMPORAL_ADDRESS is not set: run the tests through jest (globalSetup sets it)');
  const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
  const { db, schema, drop } = await createTestSchema(label);
  const payment = await startPaymentProvider({ db });
  const carrier = await startCarrier({ db });
  const connection = await Connection.connect(clientConnectionOptions({ address }));
  const dataConverter = dataConverterFromEnv();
  const client = new Client({ connection, namespace, dataConverter });
  const nativeConnection = await NativeConnection.connect(clientConnectionOptions({ address }));
  const running: Promise<void>[] = [];
  const stops: (() => void)[] = [];
  return {
    db,
    schema,
    payment,
    carrier,
    client,
    dataConverter,
    nativeConnection,
    namespace,
    deps: { db, paymentProviderUrl: payment.url, carrierUrl: carrier.url, providerTimeoutMs: 3000 },
    startWorker(worker) {
      const run = worker.run();
      running.push(run);
      const stop = () => {
        if (worker.getState() === 'RUNNING') worker.shutdown();
      };
      stops.push(stop);
      return async () => {
        stop();
        await run;
      };
    },
    async close() {
      stops.forEach((s) => s());
      await Promise.allSettled(running);
      await nativeConnection.close();
      await connection.close();
      await payment.close();
      await carrier.close();
      await drop();
    },
  };
}

export { addFault } from '../../dev/services/clients';

/** A valid order for a saga, with a fresh order ID and SKU; tests override what they are about. */
export function orderInput(overrides: Partial<OrderInput> = {}): OrderInput {
  return {
    orderId: uniqueId('o'),
    customerId: 'cust-1',
    items: [{ sku: uniqueId('sku'), quantity: 2 }],
    amount: { amountMinor: 4_990, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
    ...overrides,
  };
}

export async function seedInventory(db: Db, stock: Record<string, number>): Promise<void> {
  await db.query(
    `INSERT INTO inventory (sku, on_hand) SELECT * FROM unnest($1::text[], $2::int[])
     ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, reserved = 0`,
    [Object.keys(stock), Object.values(stock)],
  );
}

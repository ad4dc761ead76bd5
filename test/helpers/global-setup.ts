import { CLUSTER_PG_MAX_CONNECTIONS } from '../../dev/temporal-cluster';
import { startTestStack } from '../../dev/test-stack';
import { ensureAmtool, ensureComposeCheck, ensurePromtool } from '../../dev/tools';

/**
 * Brings up the real stack once for the whole run: PostgreSQL (DATABASE_URL, or
 * an embedded one), the Temporal dev server (TEMPORAL_ADDRESS, or the CLI) and
 * NATS with JetStream (NATS_URL, or a nats-server of its own).
 * Test files read the addresses from the environment; each uses its own schema
 * and task queues.
 */
export default async function globalSetup(): Promise<void> {
  const log = (m: string) => process.stderr.write(`[test stack] ${m}\n`);
  // The cluster suite's Temporal hosts keep their data in the same PostgreSQL (dev/temporal-cluster.ts checks the budget).
  const stack = await startTestStack({ log, maxConnections: CLUSTER_PG_MAX_CONNECTIONS });
  process.env.DATABASE_URL = stack.databaseUrl;
  process.env.TEMPORAL_ADDRESS = stack.temporalAddress;
  if (stack.temporalMetricsUrl) process.env.SAGAFLOW_TEMPORAL_METRICS_URL = stack.temporalMetricsUrl;
  process.env.NATS_URL = stack.natsUrl;
  // Every client and worker a test makes (and every process it spawns) encrypts payloads with it.
  if (stack.payloadKeys) process.env.SAGAFLOW_PAYLOAD_KEYS = stack.payloadKeys;
  // The checkers some tests run (built or fetched once into the cache; `npm run tools:install`).
  const promtool = await ensurePromtool(log);
  if (promtool) process.env.SAGAFLOW_PROMTOOL = promtool;
  const composeCheck = await ensureComposeCheck(log);
  if (composeCheck) process.env.SAGAFLOW_COMPOSE_CHECK = composeCheck;
  const amtool = await ensureAmtool(log);
  if (amtool) process.env.SAGAFLOW_AMTOOL = amtool;
  (globalThis as Record<string, unknown>).__sagaflowStack = stack;
}

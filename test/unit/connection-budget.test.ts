import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { StartupError } from '../../src/config';
import { describeBudget, planConnections, readConnectionLimits } from '../../src/db/connection-budget';
import { stackConnectionClaims } from '../../dev/stack';
import { CLUSTER_MAX_CONNS, CLUSTER_PG_MAX_CONNECTIONS, clusterConnectionClaims, startTemporalCluster, type ServerTools } from '../../dev/temporal-cluster';
import { databaseUrl } from '../helpers/context';

const DEFAULT_HOSTS = { frontend: 2, history: 2, matching: 2, worker: 1 };

test('a budget adds every claim and compares it with what PostgreSQL allows ordinary roles', () => {
  const b = planConnections([{ who: 'workers', processes: 4, each: 10 }, { who: 'api', processes: 1, each: 10 }], { maxConnections: 50, reserved: 3 });
  expect(b).toMatchObject({ needed: 50, allowed: 47, fits: false });
  expect(describeBudget(b)).toBe('  workers: 4 × 10 = 40\n  api: 1 × 10 = 10\n  needed 50, PostgreSQL allows 47');
  expect(planConnections(b.claims, { maxConnections: 53, reserved: 3 }).fits).toBe(true);
});

test("the cluster stack's hosts and sagaflow fit the max_connections it gives its PostgreSQL (PostgreSQL's default does not)", () => {
  // The template takes its pool sizes from the budget, never numbers of its own.
  const template = fs.readFileSync(path.join(__dirname, '../../deploy/temporal/cluster/server.yaml.tmpl'), 'utf8');
  expect([...template.matchAll(/maxConns: (\S+)/g)].map((m) => m[1])).toEqual(['{{DEFAULT_MAX_CONNS}}', '{{VISIBILITY_MAX_CONNS}}']);
  const claims = [...clusterConnectionClaims(DEFAULT_HOSTS, CLUSTER_MAX_CONNS), ...stackConnectionClaims(10)];
  const budget = planConnections(claims, { maxConnections: CLUSTER_PG_MAX_CONNECTIONS, reserved: 3 });
  expect(budget.fits).toBe(true);
  expect(budget.needed).toBe(7 * 14 + 20 + 100);
  // What the seven hosts alone took on a default server: the "too many clients" of the cluster soak.
  expect(planConnections(claims, { maxConnections: 100, reserved: 3 }).fits).toBe(false);
});

test('a cluster over budget is refused before a host starts, with the budget and the fix', async () => {
  const url = new URL(databaseUrl());
  const admin = new Client({ connectionString: databaseUrl() });
  await admin.connect();
  const limits = await readConnectionLimits(admin).finally(() => admin.end());
  expect(limits.maxConnections).toBeGreaterThan(0);
  const stateDir = path.join(os.tmpdir(), `sagaflow-budget-${process.pid}`);
  const err = await startTemporalCluster({} as ServerTools, {
    pg: { host: url.hostname, port: Number(url.port), user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) },
    stateDir,
    cli: 'temporal',
    otherConnections: [{ who: 'too many workers', processes: 100, each: limits.maxConnections }],
    log: () => undefined,
  }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(StartupError);
  expect((err as Error).message).toContain('too many workers: 100 × ');
  expect((err as Error).message).toContain('Raise max_connections');
  expect(fs.existsSync(stateDir)).toBe(false);
});

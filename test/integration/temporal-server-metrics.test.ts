/**
 * The Temporal server's own metrics, as Prometheus scrapes them from the dev
 * server the test stack starts (`--metrics-port`; in docker-compose.yml the
 * server's PROMETHEUS_ENDPOINT, scraped as the job sagaflow-temporal). Against a
 * server given by TEMPORAL_ADDRESS there is no such endpoint to read.
 */
import { Connection } from '@temporalio/client';
import { until } from '../helpers/until';

const url = process.env.SAGAFLOW_TEMPORAL_METRICS_URL;

/** The sum of a counter's samples whose labels include every one given. */
function total(text: string, name: string, labels: Record<string, string>): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

(url ? test : test.skip)('the dev server serves its Prometheus metrics, and they count the requests it answers', async () => {
  const scrape = async () => {
    const res = await fetch(url!);
    expect(res.status).toBe(200);
    return res.text();
  };
  const before = await scrape();
  // The frontend's own request counter, by operation: what the server did, not what a client says it asked.
  expect(before).toMatch(/^# TYPE service_requests counter$/m);
  const connection = await Connection.connect({ address: process.env.TEMPORAL_ADDRESS! });
  try {
    for (let i = 0; i < 3; i++) await connection.workflowService.describeNamespace({ namespace: 'default' });
  } finally {
    await connection.close();
  }
  // The server reports its counters to the endpoint about once a second.
  const described = (t: string) => total(t, 'service_requests', { operation: 'DescribeNamespace', namespace: 'default' });
  const after = await until(scrape, (t) => described(t) - described(before) >= 3, 'three more DescribeNamespace requests counted', 100, 100);
  expect(described(after) - described(before)).toBeGreaterThanOrEqual(3);
});

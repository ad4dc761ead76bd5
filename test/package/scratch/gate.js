// The replay gate from an installed toolkit: run three signups (one workflow ID twice),
// capture their histories, load them, replay them against the same code and a changed one;
// every part with the strict payload converter, which refuses a start whose input holds a Map.
const path = require('node:path');
const { Client, Connection } = require('@temporalio/client');
const { NativeConnection, Worker } = require('@temporalio/worker');
const { captureHistories, loadHistories, replayHistories } = require('@sagaflow/toolkit/replay');
const { strictDataConverter } = require('@sagaflow/toolkit/converter');

async function main() {
  const [address, taskQueue, dir] = process.argv.slice(2);
  const connection = await Connection.connect({ address });
  const dataConverter = strictDataConverter();
  const client = new Client({ connection, dataConverter });
  const native = await NativeConnection.connect({ address });
  const worker = await Worker.create({ connection: native, taskQueue, workflowsPath: require.resolve('./workflows'), activities: require('./activities'), dataConverter });
  const results = [];
  const refused = await client.workflow
    .start('signup', { taskQueue, workflowId: `${taskQueue}-map`, args: [{ fail: false, perks: new Map([['gift', true]]) }] })
    .then(() => 'started', (err) => `${err.name}: ${err.message}`);
  await worker.runUntil(async () => {
    for (const [id, fail] of [['a', false], ['b', true], ['a', true]]) {
      const handle = await client.workflow.start('signup', { taskQueue, workflowId: `${taskQueue}-${id}`, args: [{ fail }] });
      results.push(await handle.result());
    }
  });
  const query = `TaskQueue = '${taskQueue}'`;
  for (let i = 0; i < 100; i++) {
    const n = (await client.workflow.count(query)).count;
    if (n >= 3) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const captured = await captureHistories(client, { query, dir, label: 'v1', codeVersion: 'scratch', scenarioOf: (id) => id.slice(taskQueue.length + 1) });
  const histories = loadHistories(dir);
  const same = await replayHistories(histories, { workflowsPath: require.resolve('./workflows'), dataConverter });
  const changed = await replayHistories(histories, { workflowsPath: require.resolve('./workflows-changed'), dataConverter });
  const pick = (o) => ({ scenario: o.scenario, ok: o.ok, errorName: o.errorName });
  console.log(JSON.stringify({
    results,
    refused,
    captured: captured.map((e) => ({ file: path.basename(e.file), scenario: e.scenario, runId: e.runId, status: e.status })),
    same: same.map(pick),
    changed: changed.map(pick),
  }));
  await connection.close();
  await native.close();
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});

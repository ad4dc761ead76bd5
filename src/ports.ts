import net from 'node:net';

export function freePort(host = '127.0.0.1', port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(port, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * A free port below 32768, outside the range the OS hands out as the local port of outgoing
 * connections: for a process that binds its port again when restarted, since a port from that
 * range may by then be held by any connection on the machine. `taken` keeps calls made at once apart.
 */
export async function freeStablePort(taken: Set<number> = new Set()): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (taken.has(port)) continue;
    taken.add(port);
    if (await freePort('127.0.0.1', port).then(() => true, () => false)) return port;
  }
}

/**
 * The well-known port when it is free, so bookmarks keep working; any free port otherwise. With
 * SAGAFLOW_STACK_PORTS=any, always any free port: two stacks started at once on one machine (two
 * checkouts, or tests) would otherwise both find the well-known port free and race to bind it.
 */
export async function preferredPort(port: number, host = '127.0.0.1'): Promise<number> {
  if (process.env.SAGAFLOW_STACK_PORTS === 'any') return freePort(host);
  return freePort(host, port).catch(() => freePort(host));
}

export async function waitFor<T>(what: string, timeoutMs: number, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await attempt();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms: ${(last as Error)?.message ?? last}`);
}

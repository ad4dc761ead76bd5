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

/** The well-known port when it is free, so bookmarks keep working; any free port otherwise. */
export async function preferredPort(port: number, host = '127.0.0.1'): Promise<number> {
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

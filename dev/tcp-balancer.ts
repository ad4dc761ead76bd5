import net from 'node:net';

/**
 * A layer-4 load balancer in front of a cluster's frontends: what an operator puts in
 * front of Temporal's frontend hosts (a cloud load balancer, HAProxy, a DNS name with
 * several addresses). Each client connection goes to the next frontend in turn; a
 * frontend that refuses is skipped (and left out for a moment), and when a frontend
 * dies its connections are closed, so gRPC clients reconnect, through the balancer, to
 * one that lives. It forwards bytes only: TLS and HTTP/2 pass through untouched.
 */
export interface TcpBalancer {
  /** host:port that clients and workers dial. */
  address: string;
  /** Open connections per upstream, and how many connections each has taken in all. */
  stats(): Record<string, { open: number; total: number }>;
  close(): Promise<void>;
}

export interface TcpBalancerOptions {
  upstreams: string[];
  host?: string;
  port?: number;
  /** How long a refusing upstream is left out before it is tried again (ms). */
  holdDownMs?: number;
  connectTimeoutMs?: number;
}

const split = (hostPort: string) => {
  const i = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) };
};

export async function startTcpBalancer(o: TcpBalancerOptions): Promise<TcpBalancer> {
  if (o.upstreams.length === 0) throw new Error('a balancer needs at least one upstream');
  const holdDownMs = o.holdDownMs ?? 1000;
  const connectTimeoutMs = o.connectTimeoutMs ?? 2000;
  const state = new Map(o.upstreams.map((u) => [u, { open: 0, total: 0, downUntil: 0 }]));
  const sockets = new Set<net.Socket>();
  let next = 0;

  /** Upstreams in round-robin order from the next one, those not held down first. */
  const order = () => {
    const now = Date.now();
    const rotated = o.upstreams.map((_, i) => o.upstreams[(next + i) % o.upstreams.length]!);
    next = (next + 1) % o.upstreams.length;
    return [...rotated.filter((u) => state.get(u)!.downUntil <= now), ...rotated.filter((u) => state.get(u)!.downUntil > now)];
  };

  const connect = (upstream: string) =>
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(split(upstream));
      const timer = setTimeout(() => s.destroy(new Error(`connect to ${upstream} timed out`)), connectTimeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeListener('error', reject);
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });

  const server = net.createServer((client) => {
    sockets.add(client);
    client.pause();
    client.on('error', () => client.destroy());
    client.once('close', () => sockets.delete(client));
    void (async () => {
      for (const upstream of order()) {
        if (client.destroyed) return;
        let up: net.Socket;
        try {
          up = await connect(upstream);
        } catch {
          state.get(upstream)!.downUntil = Date.now() + holdDownMs;
          continue;
        }
        const st = state.get(upstream)!;
        st.downUntil = 0;
        st.open++;
        st.total++;
        sockets.add(up);
        up.setNoDelay(true);
        client.setNoDelay(true);
        // Either side gone (a killed frontend, a closed client): close the other, so the
        // client sees the loss at once and reconnects instead of waiting on a dead peer.
        const end = () => {
          client.destroy();
          up.destroy();
        };
        up.once('close', () => {
          st.open--;
          sockets.delete(up);
          end();
        });
        up.on('error', end);
        client.once('close', end);
        client.pipe(up);
        up.pipe(client);
        client.resume();
        return;
      }
      client.destroy();
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as net.AddressInfo;
  return {
    address: `${o.host ?? '127.0.0.1'}:${addr.port}`,
    stats: () => Object.fromEntries([...state].map(([u, s]) => [u, { open: s.open, total: s.total }])),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

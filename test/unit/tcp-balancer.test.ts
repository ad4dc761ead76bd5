/**
 * The cluster's frontend balancer (dev/tcp-balancer.ts) on real sockets: connections go
 * to the upstreams in turn, a refusing upstream is skipped, and when an upstream dies
 * its clients' connections close so they can reconnect to one that lives.
 */
import net from 'node:net';
import { startTcpBalancer, type TcpBalancer } from '../../dev/tcp-balancer';

/** An upstream that answers every line with its own name. */
async function namedServer(name: string) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('data', () => s.write(`${name}\n`));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    /** Closes the listener and resets every connection: a killed process. */
    kill: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.resetAndDestroy();
        server.close(() => r());
      }),
  };
}

/** Connects through the balancer and asks who answers; resolves undefined if the connection is closed instead. */
function ask(address: string): Promise<{ name?: string; socket: net.Socket }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    const socket = net.connect({ host, port }, () => socket.write('who\n'));
    socket.once('data', (b) => resolve({ name: b.toString().trim(), socket }));
    socket.once('close', () => resolve({ socket }));
    socket.on('error', () => undefined);
  });
}

let balancer: TcpBalancer | undefined;
afterEach(async () => {
  await balancer?.close();
  balancer = undefined;
});

test('connections go to each upstream in turn', async () => {
  const a = await namedServer('a');
  const b = await namedServer('b');
  balancer = await startTcpBalancer({ upstreams: [a.address, b.address] });
  const answers = [];
  for (let i = 0; i < 4; i++) {
    const { name, socket } = await ask(balancer.address);
    answers.push(name);
    socket.destroy();
  }
  expect(answers.sort()).toEqual(['a', 'a', 'b', 'b']);
  expect(Object.values(balancer.stats()).map((s) => s.total)).toEqual([2, 2]);
  await Promise.all([a.kill(), b.kill()]);
});

test('a dead upstream is skipped, and its open connections are closed so clients reconnect to the other', async () => {
  const a = await namedServer('a');
  const b = await namedServer('b');
  balancer = await startTcpBalancer({ upstreams: [a.address, b.address], holdDownMs: 60_000 });
  const first = await ask(balancer.address);
  const second = await ask(balancer.address);
  const onA = [first, second].find((c) => c.name === 'a')!;
  const closed = new Promise((r) => onA.socket.once('close', r));
  await a.kill();
  await closed; // the client learns at once that its frontend is gone

  for (let i = 0; i < 3; i++) {
    const { name, socket } = await ask(balancer.address);
    expect(name).toBe('b');
    socket.destroy();
  }
  first.socket.destroy();
  second.socket.destroy();
  await b.kill();
});

test('with every upstream down a client is closed, not left hanging, and served again once one is back', async () => {
  const a = await namedServer('a');
  const port = Number(a.address.split(':')[1]);
  await a.kill();
  balancer = await startTcpBalancer({ upstreams: [a.address], holdDownMs: 0 });
  expect((await ask(balancer.address)).name).toBeUndefined();

  const again = net.createServer((s) => s.on('data', () => s.write('a again\n')));
  await new Promise<void>((r) => again.listen(port, '127.0.0.1', r));
  const { name, socket } = await ask(balancer.address);
  expect(name).toBe('a again');
  socket.destroy();
  await new Promise((r) => again.close(r));
});

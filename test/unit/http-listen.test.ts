import http from 'node:http';
import net from 'node:net';
import { ExitCode, StartupError } from '../../src/config';
import { listen, urlHost } from '../../src/http';

const hello = () => http.createServer((_req, res) => res.end('hello'));

/** Whether this machine can bind the IPv6 loopback (containers without IPv6 cannot). */
async function ipv6Loopback(): Promise<boolean> {
  const probe = net.createServer();
  return new Promise((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => probe.close(() => resolve(true)));
  });
}

test('a URL writes an IPv6 host in brackets and any other host as it is', () => {
  expect(urlHost('::1')).toBe('[::1]');
  expect(urlHost('[::1]')).toBe('[::1]');
  expect(urlHost('127.0.0.1')).toBe('127.0.0.1');
  expect(urlHost('localhost')).toBe('localhost');
});

test('listens on a port the system picks, answers on the URL, and close() ends a kept-alive connection too', async () => {
  const server = hello();
  // Node's own listeners (http.Server tracks connections from 'listening'): listen() adds none that stay.
  const before = { error: server.listenerCount('error'), listening: server.listenerCount('listening') };
  const running = await listen(server);
  expect(running.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const agent = new http.Agent({ keepAlive: true });
  const body = await new Promise<string>((resolve, reject) => {
    http.get(running.url, { agent }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString())).on('end', () => resolve(text));
    }).on('error', reject);
  });
  expect(body).toBe('hello');
  // The listen error listener is gone once listening: later errors reach the server's own listeners.
  expect(server.listenerCount('error')).toBe(before.error);
  expect(server.listenerCount('listening')).toBe(before.listening);
  await running.close();
  expect(server.listening).toBe(false);
  agent.destroy();
});

test('an IPv6 host: the URL has it in brackets and answers', async () => {
  if (!(await ipv6Loopback())) {
    console.warn('no IPv6 loopback on this machine: the [::1] case is not run');
    return;
  }
  const running = await listen(hello(), 0, '::1');
  try {
    expect(running.url).toMatch(/^http:\/\/\[::1\]:\d+$/);
    const res = await fetch(running.url);
    expect(await res.text()).toBe('hello');
  } finally {
    await running.close();
  }
});

test('a port already in use is a start-up error naming the setting, the address and the fix, the system code kept', async () => {
  const taken = await listen(hello());
  const port = Number(new URL(taken.url).port);
  const second = hello();
  const before = { error: second.listenerCount('error'), listening: second.listenerCount('listening') };
  try {
    const err = await listen(second, port, '127.0.0.1', 'API_PORT').then(
      () => undefined,
      (e: unknown) => e as NodeJS.ErrnoException & { exitCode?: number },
    );
    expect(err?.message).toBe(
      `API_PORT: cannot listen on 127.0.0.1:${port}: the port is already in use (another process listens there): stop it, or set API_PORT to a free port`,
    );
    expect(err).toBeInstanceOf(StartupError);
    expect(err?.exitCode).toBe(ExitCode.port);
    expect(err?.code).toBe('EADDRINUSE');
    expect(second.listening).toBe(false);
    expect(second.listenerCount('listening')).toBe(before.listening);
    expect(second.listenerCount('error')).toBe(before.error);
  } finally {
    await taken.close();
  }
});

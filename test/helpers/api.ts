import net from 'node:net';
import type { Db } from '../../src/db/pool';

/** One HTTP exchange, with the body kept as the exact text the server sent. */
export interface ApiResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or undefined if it is not JSON. */
  json: any;
}

export interface RequestOptions {
  method?: string;
  apiKey?: string;
  idempotencyKey?: string;
  /** An object is sent as JSON; a string is sent as is. */
  body?: unknown;
  contentType?: string | null;
  headers?: Record<string, string>;
}

export async function request(baseUrl: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.apiKey !== undefined) headers.authorization = `Bearer ${opts.apiKey}`;
  if (opts.idempotencyKey !== undefined) headers['idempotency-key'] = opts.idempotencyKey;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    if (opts.contentType !== null) headers['content-type'] = opts.contentType ?? 'application/json';
  }
  const res = await fetch(`${baseUrl}${path}`, { method: opts.method ?? (body === undefined ? 'GET' : 'POST'), headers, body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Asserts an RFC 9457 problem answer and returns its body. */
export function expectProblem(res: ApiResponse, status: number, name?: string): Record<string, unknown> {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${res.text}`);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  expect(res.json).toEqual(expect.objectContaining({ type: expect.any(String), title: expect.any(String), status }));
  expect(res.json.type).toMatch(/^urn:sagaflow:problem:[a-z-]+$/);
  if (name !== undefined) expect(res.json.type).toBe(`urn:sagaflow:problem:${name}`);
  return res.json as Record<string, unknown>;
}

/** Row counts of the tables an API request may write. */
export async function rowCounts(db: Db): Promise<Record<string, number>> {
  const res = await db.query<Record<string, number>>(
    `SELECT (SELECT count(*)::int FROM orders) AS orders,
            (SELECT count(*)::int FROM order_items) AS order_items,
            (SELECT count(*)::int FROM idempotency_keys) AS idempotency_keys,
            (SELECT count(*)::int FROM api_clients) AS api_clients,
            (SELECT count(*)::int FROM step_ledger) AS step_ledger`,
  );
  return res.rows[0]!;
}

/** What settledRowCounts reads of a worker: how much it has in hand (@temporalio/worker's Worker.getStatus). */
interface BusyWorker {
  getStatus(): { numInFlightWorkflowActivations: number; numInFlightActivities: number };
}

/**
 * rowCounts once no saga is writing: every worker given has nothing in hand (no workflow
 * activation, no activity, local or not), and the counts read the same twice, `quietMs` apart.
 * An orderSagaV2 runs its steps in one workflow task, and a saga terminated mid-task (as some
 * tests do) runs its local steps on in the worker until that task ends, writing ledger rows after
 * its workflow has closed; a step that waits on a slow provider writes nothing for seconds and
 * then its next row, so quiet counts alone do not say that it is done.
 */
export async function settledRowCounts(db: Db, workers: readonly BusyWorker[] = [], quietMs = 300): Promise<Record<string, number>> {
  const idle = () =>
    workers.every((w) => {
      const s = w.getStatus();
      return s.numInFlightWorkflowActivations === 0 && s.numInFlightActivities === 0;
    });
  let last = await rowCounts(db);
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => setTimeout(r, quietMs));
    const now = await rowCounts(db);
    if (idle() && JSON.stringify(now) === JSON.stringify(last)) return now;
    last = now;
  }
  throw new Error(`rows still changing, or a worker still busy, after ${(200 * quietMs) / 1000} s: ${JSON.stringify(last)}`);
}

/**
 * A request written byte by byte on a socket, for what fetch refuses to send
 * (control characters in a header). Returns the raw response text.
 */
export function rawHttp(baseUrl: string, raw: string): Promise<string> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.write(raw));
    let buf = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (buf += d));
    socket.on('end', () => resolve(buf));
    socket.on('error', reject);
  });
}

/** Polls until fn returns a value that is not undefined; fails after `attempts` tries. */
export async function eventually<T>(fn: () => Promise<T | undefined>, what: string, attempts = 300, everyMs = 50): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** What a raw exchange got back: every byte, the final status and its JSON body, and how long it took. */
export interface RawAnswer {
  /** Everything the server sent, interim answers (100 Continue) included. */
  text: string;
  status: number;
  json: any;
  ms: number;
}

/**
 * A raw request on a socket, for what fetch cannot send (a `//host` or absolute-form target, a
 * backslash, a repeated header, a body that never ends). `feed` may keep writing after the head;
 * it gets a signal that fires once the server answered or closed. The socket is ended after
 * `timeoutMs` at the latest; a reset by the server still returns what arrived before it.
 */
export function rawExchange(
  baseUrl: string,
  head: string,
  feed?: (socket: net.Socket, answered: AbortSignal) => void,
  timeoutMs = 10_000,
): Promise<RawAnswer> {
  const { hostname, port } = new URL(baseUrl);
  const started = Date.now();
  const answered = new AbortController();
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(head);
      feed?.(socket, answered.signal);
    });
    let buf = '';
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      buf += d;
      if (/\r\n\r\n/.test(buf.replace(/^HTTP\/1\.1 1\d\d [^\r]*\r\n(?:[^\r]+\r\n)*\r\n/, ''))) answered.abort();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      answered.abort();
      const final = buf.replace(/^(?:HTTP\/1\.1 1\d\d [^\r]*\r\n(?:[^\r]+\r\n)*\r\n)+/, '');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(final)?.[1] ?? 0);
      const body = final.slice(final.indexOf('\r\n\r\n') + 4);
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      resolve({ text: buf, status, json, ms: Date.now() - started });
    });
  });
}

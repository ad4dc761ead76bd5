import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { HttpError, isJsonContentType, listen, matchPath, readJson } from '../../src/http';
import { inTransaction, type Db, type Tx } from '../../src/db/pool';

export interface RunningService {
  url: string;
  close(): Promise<void>;
}

export interface ServiceOptions {
  db: Db;
  port?: number;
  host?: string;
}

export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface RequestContext {
  req: IncomingMessage;
  params: Record<string, string>;
  /** The fault rule consumed by this request, so handlers can honour kinds like 'decline'. */
  fault: FaultRule | undefined;
}

export type Handler = (ctx: RequestContext) => Promise<Reply>;

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  /** Literal segments, or `:name` for one URL-decoded segment. */
  path: string;
  handler: Handler;
}

export function errorReply(status: number, type: string, extra: Record<string, unknown> = {}): Reply {
  return { status, body: { error: { type, ...extra } } };
}

/**
 * What an effect endpoint stores next to its row, so a retry with the same key
 * gets byte-for-byte the first answer, including a 402 or 201.
 */
export interface StoredResponse {
  status_code: number;
  body: unknown;
}

export function replay(stored: unknown): Reply {
  const parsed = z.object({ status_code: z.number().int(), body: z.unknown() }).safeParse(stored);
  if (!parsed.success) throw new Error('stored response is malformed');
  return { status: parsed.data.status_code, body: parsed.data.body, headers: { 'Idempotent-Replayed': 'true' } };
}

export function fresh(stored: StoredResponse): Reply {
  return { status: stored.status_code, body: stored.body };
}

export function parseBody<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const message = result.error.issues
    .map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`)
    .join('; ');
  throw new HttpError(400, 'invalid_request', message);
}

/**
 * The JSON body of an effect request, as a real provider reads it: a body not declared
 * `application/json` is refused (415) before it is parsed.
 */
export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!isJsonContentType(type)) {
    throw new HttpError(415, 'invalid_request', `Content-Type must be application/json, got "${type}"`);
  }
  return readJson(req);
}

export function idempotencyKeyOf(req: IncomingMessage): string | undefined {
  const value = req.headers['idempotency-key'];
  return typeof value === 'string' ? value : undefined;
}

export function requireIdempotencyKey(req: IncomingMessage): string {
  const key = idempotencyKeyOf(req);
  if (!key) throw new HttpError(400, 'invalid_request', 'Idempotency-Key header is required');
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw new HttpError(400, 'invalid_request', `Idempotency-Key must be at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
  }
  return key;
}

// ---------------------------------------------------------------------------
// Fault injection: in-memory test/demo knobs, deliberately not business state.

export type FaultKind = 'decline' | 'error' | 'latency' | 'drop';

export interface FaultRule {
  id: string;
  kind: FaultKind;
  keyPrefix?: string;
  path?: string;
  /** null means unlimited; JSON has no Infinity. */
  remaining: number | null;
  latency_ms: number;
  status: number;
}

const faultSpec = z.object({
  kind: z.enum(['decline', 'error', 'latency', 'drop']),
  keyPrefix: z.string().optional(),
  path: z.string().optional(),
  times: z.number().int().positive().optional(),
  latency_ms: z.number().int().min(0).max(600_000).optional(),
  status: z.number().int().min(400).max(599).optional(),
});

export class FaultInjector {
  private rules: FaultRule[] = [];
  private nextId = 1;

  /** `kinds` lets a service refuse rules it cannot honour (a carrier cannot decline a card). */
  constructor(private readonly kinds: readonly FaultKind[]) {}

  add(spec: unknown): FaultRule {
    const input = parseBody(faultSpec, spec);
    if (!this.kinds.includes(input.kind)) {
      throw new HttpError(400, 'invalid_request', `fault kind '${input.kind}' is not supported by this service`);
    }
    const rule: FaultRule = {
      id: `flt_${this.nextId++}`,
      kind: input.kind,
      remaining: input.times ?? null,
      latency_ms: input.latency_ms ?? 0,
      status: input.status ?? 503,
    };
    if (input.keyPrefix !== undefined) rule.keyPrefix = input.keyPrefix;
    if (input.path !== undefined) rule.path = input.path;
    this.rules.push(rule);
    return rule;
  }

  clear(): void {
    this.rules = [];
  }

  list(): FaultRule[] {
    return this.rules.map((rule) => ({ ...rule }));
  }

  /** Consumes one use of the first rule matching this request, if any. */
  take(path: string, key: string | undefined): FaultRule | undefined {
    const rule = this.rules.find(
      (r) =>
        (r.remaining === null || r.remaining > 0) &&
        (r.path === undefined || r.path === path) &&
        (r.keyPrefix === undefined || (key !== undefined && key.startsWith(r.keyPrefix))),
    );
    if (!rule) return undefined;
    if (rule.remaining !== null) rule.remaining -= 1;
    return { ...rule };
  }
}

const FAULTS_PATH = '/__faults';

function faultRoutes(faults: FaultInjector): Route[] {
  return [
    { method: 'GET', path: FAULTS_PATH, handler: async () => ({ status: 200, body: { faults: faults.list() } }) },
    {
      method: 'POST',
      path: FAULTS_PATH,
      handler: async ({ req }) => ({ status: 201, body: { id: faults.add(await readJson(req)).id } }),
    },
    {
      method: 'DELETE',
      path: FAULTS_PATH,
      handler: async () => {
        faults.clear();
        return { status: 200, body: { cleared: true } };
      },
    },
  ];
}

// ---------------------------------------------------------------------------
// Server plumbing.

function send(res: ServerResponse, reply: Reply): void {
  const payload = JSON.stringify(reply.body);
  res.writeHead(reply.status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(payload),
    ...reply.headers,
    // A body left unread (readJson stops at its limit) is not drained: the connection closes after the answer.
    ...(res.req.complete ? {} : { Connection: 'close' }),
  });
  res.end(payload);
}

function toErrorReply(err: unknown): Reply {
  if (err instanceof HttpError) return errorReply(err.status, err.type, { message: err.message });
  // The client went away mid-request (a worker killed during its call): nobody is left to answer.
  if ((err as NodeJS.ErrnoException)?.code === 'ECONNRESET') return errorReply(499, 'client_closed_request');
  console.error('[service] unhandled error', err);
  return errorReply(500, 'api_error', { message: 'internal error' });
}

async function dispatch(routes: Route[], faults: FaultInjector, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  let fault: FaultRule | undefined;
  let reply: Reply;
  try {
    let found: { route: Route; params: Record<string, string> } | undefined;
    for (const route of routes) {
      if (route.method !== req.method) continue;
      const params = matchPath(route.path, path);
      if (params) {
        found = { route, params };
        break;
      }
    }
    if (!found) {
      send(res, errorReply(404, 'not_found', { message: `${req.method} ${path}` }));
      return;
    }
    if (req.method === 'POST' && path !== FAULTS_PATH) fault = faults.take(path, idempotencyKeyOf(req));
    if (fault?.kind === 'error') {
      send(res, errorReply(fault.status, 'unavailable', { message: 'injected fault' }));
      return;
    }
    if (fault?.kind === 'latency') await sleep(fault.latency_ms);
    reply = await found.route.handler({ req, params: found.params, fault });
  } catch (err) {
    reply = toErrorReply(err);
  }
  // The handler has committed by now; dropping here is the "effect happened, answer lost" case.
  if (fault?.kind === 'drop') {
    req.socket.destroy();
    return;
  }
  send(res, reply);
}

export async function startService(opts: {
  routes: Route[];
  faults: FaultInjector;
  host?: string;
  port?: number;
}): Promise<RunningService> {
  const routes = [...faultRoutes(opts.faults), ...opts.routes];
  const server = http.createServer((req, res) => {
    dispatch(routes, opts.faults, req, res).catch((err: unknown) => {
      console.error('[service] dispatch failed', err);
      if (!res.headersSent) send(res, errorReply(500, 'api_error'));
      else res.destroy();
    });
  });
  return listen(server, opts.port ?? 0, opts.host ?? '127.0.0.1');
}

/** The books of one effect endpoint: a constant from this code, never input (it is spliced into the SQL). */
export type EffectTable = 'provider_charges' | 'carrier_shipments';

/**
 * Runs a create under its Idempotency-Key: a request whose key is still being
 * handled by another request is refused with 409 (retry later), as Stripe
 * does, rather than queued behind it.
 */
export async function underKey(db: Db, books: EffectTable, key: string, create: (tx: Tx) => Promise<Reply>): Promise<Reply> {
  return inTransaction(db, async (tx) => {
    const free = await tx.query<{ ok: boolean }>(`SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok`, [`${books}:${key}`]);
    if (!free.rows[0]?.ok) {
      return errorReply(409, 'idempotency_key_in_use', {
        message: 'another request with this Idempotency-Key is in progress; retry after it has ended',
      });
    }
    return create(tx);
  });
}

/**
 * The answer to a create whose key was already used: 422 if the key came with
 * other parameters, else the stored first answer, byte for byte.
 */
export async function answerExisting(tx: Tx, books: EffectTable, key: string, fp: string): Promise<Reply> {
  const existing = await tx.query<{ fingerprint: string | null; response: unknown }>(
    `SELECT fingerprint, response FROM ${books} WHERE idempotency_key = $1`,
    [key],
  );
  const row = existing.rows[0];
  if (!row) throw new Error(`${key} conflicted but is not visible`);
  if (row.fingerprint !== fp || row.response === null) {
    return errorReply(422, 'idempotency_mismatch', { message: 'Idempotency-Key was already used with different parameters' });
  }
  return replay(row.response);
}

/** The books of one reversal endpoint (a refund, a void): its table and the column naming its target's id. */
export interface ReversalTable {
  table: 'provider_refunds' | 'carrier_voids';
  targetColumn: 'charge_id' | 'shipment_id';
  /** For the 422: "a different charge". */
  what: string;
}

/**
 * A reversal applied once per key: the reversal key is claimed first, so a
 * concurrent duplicate blocks until we commit and then replays, instead of
 * racing us on the target's row. The same key naming another target is a 422.
 * A reversal the service refuses (an HttpError: no such target, already
 * reversed) rolls back and stores nothing, so its key stays free.
 */
export async function reverseOnce(
  db: Db,
  books: ReversalTable,
  key: string,
  target: string,
  reverse: (tx: Tx) => Promise<Record<string, unknown>>,
): Promise<Reply> {
  return inTransaction(db, async (tx) => {
    const claimed = await tx.query(
      `INSERT INTO ${books.table} (idempotency_key, ${books.targetColumn}, response)
       VALUES ($1, $2, '{}') ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key`,
      [key, target],
    );
    if (claimed.rowCount !== 1) {
      const prior = await tx.query<{ target: string | null; response: unknown }>(
        `SELECT ${books.targetColumn} AS target, response FROM ${books.table} WHERE idempotency_key = $1`,
        [key],
      );
      const row = prior.rows[0];
      if (!row) throw new Error(`${key} conflicted but is not visible`);
      if (row.target !== target) {
        return errorReply(422, 'idempotency_mismatch', { message: `Idempotency-Key was already used for ${books.what}` });
      }
      return replay(row.response);
    }
    const stored: StoredResponse = { status_code: 200, body: await reverse(tx) };
    await tx.query(`UPDATE ${books.table} SET response = $2 WHERE idempotency_key = $1`, [key, JSON.stringify(stored)]);
    return fresh(stored);
  });
}

import { createHash, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { z } from 'zod';
import { HttpError, isJsonContentType, parseJson, readText } from '../http';
import { PayloadDecryptionError } from './encryption-codec';

/**
 * The codec server: the HTTP protocol through which the Temporal UI and CLI
 * have payloads decoded (and encoded) by the codec the workers use, so that an
 * operator reads a saga's inputs without the keys ever leaving this process.
 *
 *   POST /decode, POST /encode   {"payloads":[{"metadata":{"encoding":"<base64>",...},"data":"<base64>"}]}
 *                                (protobuf JSON: bytes in base64), answered in the same shape
 *   OPTIONS                      CORS preflight, for the origins allowed
 *   GET /healthz                 no credential
 *
 * Every POST needs `Authorization: Bearer <token>` (401 otherwise, compared in
 * constant time). Every decode and encode is logged with its caller's address
 * and namespace: reading payment data leaves a trail.
 */
export interface CodecServerOptions {
  codec: PayloadCodec;
  /** What `Authorization: Bearer` must carry. */
  token: string;
  host?: string;
  /** 0: any free port. */
  port?: number;
  /** Browser origins (a Temporal UI's) allowed to call it. */
  corsOrigins?: readonly string[];
  /**
   * Origins whose requests need no token when they come from this machine: the
   * dev stack's own Temporal UI on loopback, which has no way to send one. Never
   * given in production (bin/codec-server.ts has no setting for it).
   */
  localOriginsWithoutToken?: readonly string[];
  /** Largest request body; 4 MiB by default (a page of history's payloads). */
  maxBodyBytes?: number;
  log?: (line: Record<string, unknown>) => void;
}

export interface RunningCodecServer {
  url: string;
  close(): Promise<void>;
}

const ALLOW_HEADERS = 'Content-Type, Authorization, X-Namespace';
const ALLOW_METHODS = 'POST, OPTIONS';
const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

const jsonPayloads = z.object({
  payloads: z.array(
    z.object({
      metadata: z.record(z.string(), z.string()).nullish(),
      data: z.string().nullish(),
    }),
  ),
});
type JsonPayload = z.infer<typeof jsonPayloads>['payloads'][number];

function fromJson({ metadata, data }: JsonPayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(data ?? '', 'base64'),
  };
}

function toJson({ metadata, data }: Payload): { metadata: Record<string, string>; data: string } {
  return {
    metadata: Object.fromEntries(Object.entries(metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? []).toString('base64')])),
    data: Buffer.from(data ?? []).toString('base64'),
  };
}

export async function startCodecServer(opts: CodecServerOptions): Promise<RunningCodecServer> {
  if (opts.token.length < 32) throw new Error('the codec server token must be at least 32 characters');
  const expected = createHash('sha256').update(opts.token).digest();
  const corsOrigins = new Set([...(opts.corsOrigins ?? []), ...(opts.localOriginsWithoutToken ?? [])]);
  const localOrigins = new Set(opts.localOriginsWithoutToken ?? []);
  const maxBody = opts.maxBodyBytes ?? 4 * 1024 * 1024;
  const log = opts.log ?? (() => undefined);

  /** Hashing both sides makes the comparison constant-time whatever the lengths. */
  const bearerMatches = (header: string | undefined): boolean => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
    if (!m) return false;
    return timingSafeEqual(createHash('sha256').update(m[1]!).digest(), expected);
  };

  const send = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { ...(text ? { 'Content-Type': 'application/json' } : {}), 'Cache-Control': 'no-store', ...headers });
    res.end(text);
  };
  const error = (res: ServerResponse, status: number, type: string, message: string, headers?: Record<string, string>) =>
    send(res, status, { error: { type, message } }, headers);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '').split('?')[0];
    const origin = req.headers.origin;
    res.setHeader('Vary', 'Origin');
    if (origin && corsOrigins.has(origin)) res.setHeader('Access-Control-Allow-Origin', origin);

    if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) return send(res, 200, { status: 'ok' });
    const op = path === '/decode' ? 'decode' : path === '/encode' ? 'encode' : undefined;
    if (!op) return error(res, 404, 'not_found', 'POST /decode or /encode');
    if (req.method === 'OPTIONS') {
      if (!origin || !corsOrigins.has(origin)) return error(res, 403, 'origin_not_allowed', `origin ${origin ?? '(none)'} is not allowed`);
      return send(res, 204, undefined, {
        'Access-Control-Allow-Methods': ALLOW_METHODS,
        'Access-Control-Allow-Headers': ALLOW_HEADERS,
        'Access-Control-Max-Age': '600',
      });
    }
    if (req.method !== 'POST') return error(res, 405, 'method_not_allowed', `${op} takes POST`, { Allow: ALLOW_METHODS });

    const namespace = req.headers['x-namespace'];
    const remote = req.socket.remoteAddress;
    const header = req.headers.authorization;
    const via = bearerMatches(header)
      ? 'token'
      : header === undefined && origin && localOrigins.has(origin) && remote && LOOPBACK.has(remote)
        ? 'local-ui'
        : undefined;
    const audit = (status: number, extra: Record<string, unknown> = {}) =>
      log({ level: status === 200 ? 'info' : 'warn', msg: 'codec request', op, status, via: via ?? 'refused', remote, origin, namespace, ...extra });
    if (!via) {
      audit(401);
      return error(res, 401, 'unauthorized', 'Authorization: Bearer <codec server token> required', {
        'WWW-Authenticate': 'Bearer realm="sagaflow-codec"',
        Connection: 'close',
      });
    }
    // A browser form can post text/plain without a preflight; only JSON is taken.
    if (!isJsonContentType(req.headers['content-type'] ?? '')) {
      audit(415);
      return error(res, 415, 'unsupported_media_type', 'Content-Type must be application/json', { Connection: 'close' });
    }
    let payloads: Payload[];
    try {
      const parsed = jsonPayloads.safeParse(parseJson(await readText(req, maxBody)));
      if (!parsed.success) throw new HttpError(400, 'invalid_request', 'expected {"payloads":[{"metadata":{...},"data":"<base64>"}]}');
      payloads = parsed.data.payloads.map(fromJson);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      audit(err.status);
      return error(res, err.status, err.type, err.message, req.complete ? {} : { Connection: 'close' });
    }
    let out: Payload[];
    try {
      out = op === 'decode' ? await opts.codec.decode(payloads) : await opts.codec.encode(payloads);
    } catch (err) {
      if (!(err instanceof PayloadDecryptionError)) throw err;
      audit(422, { payloads: payloads.length, keyId: err.keyId, error: err.message });
      return error(res, 422, 'payload_undecodable', err.message);
    }
    audit(200, { payloads: payloads.length });
    send(res, 200, { payloads: out.map(toJson) });
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log({ level: 'error', msg: 'codec request failed', error: (err as Error).message });
      if (!res.headersSent) error(res, 500, 'internal', 'the codec server failed; see its log', { Connection: 'close' });
      else res.destroy();
    });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ExitCode, StartupError } from './config';

/**
 * The HTTP plumbing the API and the dev services share: listening, errors with
 * a status, path matching, and bounded, strict JSON bodies.
 */

export interface Listening {
  /** `http://host:port`, an IPv6 host in brackets (`http://[::1]:8080`). */
  url: string;
  /** Stops accepting, ends every open connection (idle keep-alive ones too) and resolves once closed. */
  close(): Promise<void>;
}

/** The host as a URL writes it: an IPv6 address in brackets. */
export function urlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * Listens on `host:port` (port 0: one the system picks). A port that cannot be bound rejects
 * with a StartupError (exit code 6) naming the address, the setting that chose it (`setting`,
 * e.g. `API_PORT`) and the fix, keeping the system's code (`EADDRINUSE`, `EACCES`, ...) as `code`;
 * the listen error listener is removed once listening, so later server errors reach their own.
 */
export function listen(server: Server, port = 0, host = '127.0.0.1', setting?: string): Promise<Listening> {
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) => {
      server.off('listening', listening);
      const fix = setting ? `set ${setting} to a free port` : 'choose another port';
      const reason =
        err.code === 'EADDRINUSE'
          ? `the port is already in use (another process listens there): stop it, or ${fix}`
          : err.code === 'EACCES'
            ? `this user may not listen there (ports below 1024 need privileges): ${fix}`
            : err.code === 'EADDRNOTAVAIL'
              ? `${host} is not an address of this machine: listen on one of its own`
              : `${err.message}: ${fix}`;
      const message = `${setting ? `${setting}: ` : ''}cannot listen on ${urlHost(host)}:${port}: ${reason}`;
      reject(Object.assign(new StartupError(message, ExitCode.port), { code: err.code, cause: err }));
    };
    const listening = () => {
      server.off('error', failed);
      const bound = (server.address() as AddressInfo).port;
      resolve({
        url: `http://${urlHost(host)}:${bound}`,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            // Keep-alive sockets (fetch keeps them) would otherwise hold close() open indefinitely.
            server.closeAllConnections();
          }),
      });
    };
    server.once('error', failed);
    server.once('listening', listening);
    server.listen(port, host);
  });
}

export const MAX_BODY_BYTES = 64 * 1024;

/** Thrown by handlers to answer with `{error:{type,message}}`; anything else becomes a 500. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message?: string,
  ) {
    super(message ?? type);
  }
}

/** Whether a Content-Type header names JSON (`application/json`, parameters allowed). */
export function isJsonContentType(type: string): boolean {
  return /^application\/json\s*(;|$)/i.test(type);
}

/** Whether the request declares a body over `limit` bytes: refused before a byte of it is read. */
export function declaredTooLarge(req: IncomingMessage, limit = MAX_BODY_BYTES): boolean {
  return Number(req.headers['content-length'] ?? 0) > limit;
}

const tooLarge = (limit: number) => new HttpError(413, 'request_too_large', `body exceeds ${limit} bytes`);

/**
 * The body as UTF-8 text, at most `limit` bytes. A larger Content-Length is refused at once, and
 * reading stops as soon as a body without one passes the limit: the rest is never read, so the
 * answer must close the connection (answer `Connection: close` while `req.complete` is false).
 */
export function readText(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<string> {
  if (declaredTooLarge(req, limit)) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (err: unknown, text?: string) => {
      req.off('data', onData).off('end', onEnd).off('error', settle).off('close', onClose);
      if (err) reject(err);
      else resolve(text ?? '');
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      chunks.push(chunk);
      if (size <= limit) return;
      req.pause();
      settle(tooLarge(limit));
    };
    const onEnd = () => {
      try {
        // Fatal: invalid UTF-8 is refused, never stored as U+FFFD, so what is stored is what was sent.
        settle(undefined, new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks)));
      } catch {
        settle(new HttpError(400, 'invalid_request', 'body must be valid UTF-8'));
      }
    };
    const onClose = () => settle(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
    req.on('data', onData).on('end', onEnd).on('error', settle).on('close', onClose);
  });
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError(400, 'invalid_request', 'body must be valid JSON');
  }
}

export async function readJson(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  return parseJson(await readText(req, limit));
}

const STRING = /"[^"\\]*(?:\\.[^"\\]*)*"/y;
const NUMBER = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y;
const COLON = /\s*:/y;

/**
 * Where valid JSON text writes an integer as something else (`1.0`, `1e3`, `1999.00000000000001`):
 * JSON.parse hands all three over as integers, so only the text tells. Paths as zod writes them (`items.0.quantity`).
 */
export function integersNotWrittenAsIntegers(text: string): string[] {
  const found: string[] = [];
  const path: (string | number)[] = [];
  for (let i = 0; i < text.length; ) {
    const c = text[i];
    if (c === '"') {
      STRING.lastIndex = i;
      STRING.exec(text);
      COLON.lastIndex = STRING.lastIndex;
      if (COLON.test(text)) path[path.length - 1] = JSON.parse(text.slice(i, STRING.lastIndex)) as string;
      i = STRING.lastIndex;
    } else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(text)!;
      if ((m[1] || m[2]) && Number.isInteger(Number(m[0]))) found.push(path.join('.'));
      i = NUMBER.lastIndex;
    } else {
      if (c === '{') path.push('');
      else if (c === '[') path.push(0);
      else if (c === '}' || c === ']') path.pop();
      else if (c === ',' && typeof path[path.length - 1] === 'number') path[path.length - 1] = (path[path.length - 1] as number) + 1;
      i++;
    }
  }
  return found;
}

export function matchPath(pattern: string, path: string): Record<string, string> | undefined {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i] ?? '';
    const g = got[i] ?? '';
    if (w.startsWith(':')) {
      if (g === '') return undefined;
      try {
        params[w.slice(1)] = decodeURIComponent(g);
      } catch {
        throw new HttpError(400, 'invalid_request', 'malformed URL encoding');
      }
    } else if (w !== g) {
      return undefined;
    }
  }
  return params;
}

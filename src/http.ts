import type { IncomingMessage } from 'node:http';

/**
 * The HTTP plumbing the API and the dev services share: errors with a status,
 * path matching, and bounded, strict JSON bodies.
 */

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

/** Drains the whole body even past the limit, so the client reads our 413 instead of a reset. */
/** Whether a Content-Type header names JSON (`application/json`, parameters allowed). */
export function isJsonContentType(type: string): boolean {
  return /^application\/json\s*(;|$)/i.test(type);
}

export async function readJson(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  }
  if (size > limit) throw new HttpError(413, 'request_too_large', `body exceeds ${limit} bytes`);
  let text: string;
  try {
    // Fatal: invalid UTF-8 is refused, never stored as U+FFFD, so what is stored is what was sent.
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new HttpError(400, 'invalid_request', 'body must be valid UTF-8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError(400, 'invalid_request', 'body must be valid JSON');
  }
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

import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Db } from '../db/pool';
import { Problem } from './problem';

/**
 * What a key may reach: `orders` (every key made before scopes) the order and webhook routes,
 * `admin` (`sagaflow clients create NAME --admin`) the /admin routes only.
 */
export const API_SCOPES = ['orders', 'admin'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

export interface ApiClient {
  id: string;
  name: string;
  scope: ApiScope;
}

/** How an API key is stored and looked up: its SHA-256, never the key. */
export const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');

/** Creates a client (of scope `orders` unless told) and returns its API key: the only time the key is ever seen. */
export async function createApiClient(db: Db, name: string, opts: { scope?: ApiScope } = {}): Promise<ApiClient & { apiKey: string }> {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new Error('client name: 1-64 letters, digits, _ . -');
  const scope = opts.scope ?? 'orders';
  if (!API_SCOPES.includes(scope)) throw new Error(`client scope: one of ${API_SCOPES.join(', ')}`);
  const id = `cli_${randomBytes(8).toString('hex')}`;
  const apiKey = `sk_${randomBytes(24).toString('base64url')}`;
  await db.query('INSERT INTO api_clients (id, name, key_hash, scope) VALUES ($1, $2, $3, $4)', [id, name, hashKey(apiKey), scope]);
  return { id, name, scope, apiKey };
}

export type RevokeOutcome =
  | { kind: 'revoked'; client: Pick<ApiClient, 'id' | 'name'> }
  | { kind: 'already-revoked'; client: Pick<ApiClient, 'id' | 'name'>; revokedAt: Date }
  | { kind: 'unknown' };

/**
 * Revokes a client's key, named by the client's name or ID: from the next
 * request on it is refused (401), as an unknown key is. The answer to a leaked
 * key. Revoking twice changes nothing and says when it was revoked.
 */
export async function revokeApiClient(db: Db, nameOrId: string): Promise<RevokeOutcome> {
  const res = await db.query<Pick<ApiClient, 'id' | 'name'>>(
    `UPDATE api_clients SET revoked_at = now() WHERE (name = $1 OR id = $1) AND revoked_at IS NULL RETURNING id, name`,
    [nameOrId],
  );
  if (res.rows[0]) return { kind: 'revoked', client: res.rows[0] };
  const prior = await db.query<Pick<ApiClient, 'id' | 'name'> & { revoked_at: Date }>(
    `SELECT id, name, revoked_at FROM api_clients WHERE name = $1 OR id = $1`,
    [nameOrId],
  );
  const row = prior.rows[0];
  if (!row) return { kind: 'unknown' };
  return { kind: 'already-revoked', client: { id: row.id, name: row.name }, revokedAt: row.revoked_at };
}

/** The key of an `Authorization: Bearer <key>` header, or undefined if there is none or it is malformed. */
export function bearerKey(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  // The scheme is case-insensitive (RFC 9110 11.1, RFC 6750 2.1).
  const match = typeof header === 'string' ? /^bearer +([A-Za-z0-9_-]{1,200}) *$/i.exec(header) : null;
  return match?.[1] || undefined;
}

/** The client whose key has this hash, unless the key is unknown or revoked. */
export async function findClientByKeyHash(db: Db, keyHash: string): Promise<ApiClient | undefined> {
  const res = await db.query<ApiClient>('SELECT id, name, scope FROM api_clients WHERE key_hash = $1 AND revoked_at IS NULL', [keyHash]);
  return res.rows[0];
}

export const missingKey = () => new Problem('unauthorized', 'send Authorization: Bearer <api key>', {}, { 'WWW-Authenticate': 'Bearer' });
export const unknownKey = () => new Problem('unauthorized', 'unknown or revoked API key', {}, { 'WWW-Authenticate': 'Bearer' });

/** A known key of the wrong scope for the route: 403, naming the scope the route needs. */
export function wrongScope(client: ApiClient, needed: ApiScope): Problem {
  const how = needed === 'admin' ? 'an admin key (sagaflow clients create NAME --admin)' : 'an ordinary client key (sagaflow clients create NAME)';
  return new Problem('forbidden', `this route needs a key of scope ${needed}, ${how}; this key's scope is ${client.scope}`, { requiredScope: needed });
}

/** The client whose key the request sends, with its scope; with `needed`, refused (403) unless its scope is that one. */
export async function authenticate(db: Db, req: IncomingMessage, needed?: ApiScope): Promise<ApiClient> {
  const key = bearerKey(req);
  if (key === undefined) throw missingKey();
  const client = await findClientByKeyHash(db, hashKey(key));
  if (!client) throw unknownKey();
  if (needed !== undefined && client.scope !== needed) throw wrongScope(client, needed);
  return client;
}

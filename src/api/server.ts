import { checkReadiness } from '../observability/health';
import { referenceAssets } from './reference-page';
import { createLogger, lineLogger } from '../observability/log';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Client } from '@temporalio/client';
import type { z } from 'zod';
import { isConnectionError, isPermanentDataError, type Db } from '../db/pool';
import { declaredTooLarge, HttpError, MAX_BODY_BYTES, integersNotWrittenAsIntegers, isJsonContentType, listen, matchPath, parseJson, readText } from '../http';
import { findOrder, type OrderRow } from '../orders/repository';
import { startRecoveryLoop } from '../orders/recovery';
import { orderWorkflowId } from '../../workflows/order/ids';
import { SagaMetrics } from '../observability/metrics';
import { inSpan, SpanKind } from '../observability/tracing';
import { bearerKey, findClientByKeyHash, hashKey, missingKey, unknownKey, wrongScope, type ApiClient, type ApiScope } from './auth';
import { FailedAuthentications, sourceOf, TokenBuckets } from './throttle';
import { redactAddresses } from '../redact';
import { IDEMPOTENCY_KEY_PATTERN, purgeExpiredKeys } from '@sagaflow/toolkit/edge';
import { cancelOrder as cancelOrderUseCase } from './cancel-order';
import { createOrder as createOrderUseCase, type CreateOrderDeps } from './create-order';
import { liveSaga, orderView } from './views';
import { listClientOrders } from './list-orders';
import { buildOpenApi } from './openapi';
import { Problem } from './problem';
import {
  adminBulkRequest,
  adminSagaListQuery,
  cancelRequest,
  createOrderRequest,
  resolveRequest,
  retryCompensationRequest,
  WAIT_MAX_MS,
  webhookRequest,
} from './schemas';
import { InvalidCursor } from '../orders/list';
import { listSagas, OperatorError, parseDuration, showSaga, type OperatorDeps, type SagaListFilter } from '../operator/sagas';
import { cancelSagas, NoSuchOrder, resolve, retryCompensation, terminateSagas } from '../operator/actions';
import { createEndpoint, deleteEndpoint, enableEndpoint, EndpointRefused, listDeliveries, listEndpoints, replayDelivery } from '../webhooks/endpoints';

export interface ApiOptions {
  db: Db;
  temporal: Client;
  taskQueue: string;
  /** How long an Idempotency-Key is remembered. */
  keyTtlMs?: number;
  /** How long an in-flight request holds its key before a retry may take over. */
  leaseMs?: number;
  /**
   * Housekeeping in this process, stopped by close(): set either interval (> 0) to have startApi run
   * startApiHousekeeping with it (tests and in-process tools do). Unset, startApi starts none; the
   * API process starts it beside the server (bin/api.ts). `cleanupIntervalMs`: how often expired
   * Idempotency-Keys are purged; `recoveryIntervalMs`: how often to look for orders whose request
   * died before starting their saga.
   */
  cleanupIntervalMs?: number;
  recoveryIntervalMs?: number;
  host?: string;
  port?: number;
  log?: (line: Record<string, unknown>) => void;
  /** Start sagas with their search attributes (they must be registered on the namespace). */
  searchAttributes?: boolean;
  /** The workflow type sagas start as (SAGAFLOW_ORDER_SAGA_TYPE); the order saga's current one when unset. */
  workflowType?: string;
  /** Request and replay metrics, served on GET /metrics. */
  metrics?: SagaMetrics;
  /**
   * Webhook endpoints: the key their signing secrets are sealed with (without it, POST /webhooks
   * answers 501), and whether they may point at loopback or private addresses (the dev stack only).
   */
  webhooks?: { sealingKey?: Buffer; allowPrivate?: boolean };
  /**
   * Throttling, all off when unset (README, "HTTP API"). `perSecond` and `burst`: a token bucket
   * per API client (0: no limit). `authFailures` within `authWindowMs`: failed authentications
   * from one address before it is refused, for that window, ahead of any key lookup (0: no limit).
   */
  throttle?: { perSecond?: number; burst?: number; authFailures?: number; authWindowMs?: number };
  /**
   * What the process still waits for before it serves (the API process listens before PostgreSQL
   * and Temporal answer, bin/api.ts): each pending dependency and why. While any is pending,
   * /healthz answers 200, /readyz 503 naming them, and every other route but the docs 503 with
   * Retry-After.
   */
  startup?: () => Record<string, string>;
  /** TEMPORAL_UI_URL: the Temporal UI's base URL, for the links of GET /admin/sagas/{id}. */
  temporalUiUrl?: string;
}

export interface RunningApi {
  url: string;
  close(): Promise<void>;
}

/** Order IDs as the API and the saga's schema write them; anything else cannot name an order. */
const ORDER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const JSON_TYPE = 'application/json';

interface Reply {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

/** `arrivedAt`: when the request arrived (ms since the epoch), for bounds that count from there. */
type Handler = (req: IncomingMessage, params: Record<string, string>, query: URLSearchParams, arrivedAt: number) => Promise<Reply>;

/** Routes probed by orchestrators and scrapers: their access lines are debug. */
const PROBES = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * The request target as routed: origin-form only (RFC 9112 3.2.1), visible ASCII, one leading '/'
 * and no '\\' or '#'. Never resolved as a URL: `//host/orders`, `http://host/orders` and
 * `/orders\\x` would otherwise reach a route a path rule in front of the API does not see.
 */
export function originForm(target: string | undefined): { path: string; query: URLSearchParams } | undefined {
  if (target === undefined || !/^\/(?!\/)[\x21-\x7e]*$/.test(target) || /[\\#]/.test(target)) return undefined;
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: new URLSearchParams() } : { path: target.slice(0, q), query: new URLSearchParams(target.slice(q + 1)) };
}

const json = (status: number, value: unknown, headers: Record<string, string> = {}): Reply => ({
  status,
  body: JSON.stringify(value),
  headers: { 'Content-Type': JSON_TYPE, ...headers },
});

export async function startApi(opts: ApiOptions): Promise<RunningApi> {
  const { db, temporal, taskQueue } = opts;
  const keyTtlMs = opts.keyTtlMs ?? 24 * 3600_000;
  const leaseMs = opts.leaseMs ?? 10_000;
  const log = opts.log ?? lineLogger(createLogger({ service: 'sagaflow-api', level: process.env.LOG_LEVEL || 'info' }));
  const metrics = opts.metrics ?? new SagaMetrics({ role: 'api' });

  const callers = createCallers(db, metrics, opts.throttle);
  const routes = apiRoutes({
    db,
    temporal,
    useCaseDeps: { db, temporal, taskQueue, keyTtlMs, leaseMs, searchAttributes: opts.searchAttributes, workflowType: opts.workflowType },
    caller: callers.caller,
    webhooks: opts.webhooks,
    metrics,
    log,
    temporalUiUrl: opts.temporalUiUrl,
  });
  const handle = requestHandler(routes, metrics, log, opts.startup);
  const server = http.createServer((req, res) => {
    void handle(req, res);
  });
  // Expect: 100-continue: no 100 for a body over the limit, so it is never sent (handle answers 413).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (!declaredTooLarge(req)) res.writeContinue();
    void handle(req, res);
  });
  const listening = await listen(server, opts.port ?? 0, opts.host ?? '127.0.0.1', 'API_PORT');

  // Buckets that filled up again and addresses whose window passed are forgotten: the server's own
  // memory, so it lives and ends with the server.
  const sweep = setInterval(callers.sweep, 60_000);
  sweep.unref();
  const inProcess = (opts.cleanupIntervalMs ?? 0) > 0 || (opts.recoveryIntervalMs ?? 0) > 0;
  const housekeeping = inProcess
    ? startApiHousekeeping({
        db,
        temporal,
        taskQueue,
        leaseMs,
        cleanupIntervalMs: opts.cleanupIntervalMs ?? 0,
        recoveryIntervalMs: opts.recoveryIntervalMs ?? 0,
        searchAttributes: opts.searchAttributes,
        workflowType: opts.workflowType,
        metrics,
        log,
      })
    : undefined;
  return {
    url: listening.url,
    close: () => {
      clearInterval(sweep);
      housekeeping?.stop();
      return listening.close();
    },
  };
}

export interface ApiHousekeepingOptions {
  db: Db;
  temporal: Client;
  taskQueue: string;
  /** The API's lease (ApiOptions.leaseMs): an order whose request has held it this long without a saga is abandoned. */
  leaseMs?: number;
  /** How often expired Idempotency-Keys are purged (0: never). */
  cleanupIntervalMs?: number;
  /** How often to look for orders whose request died before starting their saga (0: never). */
  recoveryIntervalMs?: number;
  searchAttributes?: boolean;
  /** The workflow type sagas start as (SAGAFLOW_ORDER_SAGA_TYPE); the order saga's current one when unset. */
  workflowType?: string;
  /** The API's metrics: recovered orders are counted on them. */
  metrics?: SagaMetrics;
  log?: (line: Record<string, unknown>) => void;
}

export interface Housekeeping {
  stop(): void;
}

/**
 * The API's housekeeping, apart from its requests: expired Idempotency-Keys are purged, and orders
 * whose request died between its commit and the saga's start get their saga, whether or not the
 * client ever comes back. The API process starts it beside the server (bin/api.ts); several API
 * processes may run it at once.
 */
export function startApiHousekeeping(opts: ApiHousekeepingOptions): Housekeeping {
  const { db, temporal, taskQueue } = opts;
  const leaseMs = opts.leaseMs ?? 10_000;
  const log = opts.log ?? lineLogger(createLogger({ service: 'sagaflow-api', level: process.env.LOG_LEVEL || 'info' }));
  const cleanupIntervalMs = opts.cleanupIntervalMs ?? 10 * 60_000;
  const purge = () => {
    purgeExpiredKeys(db).then(
      (n) => n > 0 && log({ msg: 'expired idempotency keys purged', count: n }),
      (e: Error) => log({ level: 'warn', msg: 'idempotency key purge failed', error: e.message }),
    );
  };
  const timer = cleanupIntervalMs > 0 ? setInterval(purge, cleanupIntervalMs) : undefined;
  timer?.unref();
  const recoveryIntervalMs = opts.recoveryIntervalMs ?? Math.max(1000, Math.round(leaseMs / 2));
  const recovery =
    recoveryIntervalMs > 0
      ? startRecoveryLoop({
          db,
          temporal,
          taskQueue,
          olderThanMs: leaseMs,
          searchAttributes: opts.searchAttributes,
          workflowType: opts.workflowType,
          intervalMs: recoveryIntervalMs,
          onRecovered: (ids) => {
            opts.metrics?.ordersRecovered.inc(ids.length);
            log({ msg: 'abandoned orders recovered: sagas started', count: ids.length, orderIds: ids });
          },
          onError: (e) => log({ level: 'warn', msg: 'order recovery failed; retrying next round', error: e.message }),
        })
      : undefined;
  return {
    stop: () => {
      clearInterval(timer);
      recovery?.stop();
    },
  };
}

/**
 * Who is calling: the API client named by the request's key, after the throttles (ApiOptions.throttle).
 * `sweep` forgets the throttles' state that has run out.
 */
function createCallers(
  db: Db,
  metrics: SagaMetrics,
  throttle: ApiOptions['throttle'],
): { caller(req: IncomingMessage, scope?: ApiScope): Promise<ApiClient>; sweep(): void } {
  const perSecond = throttle?.perSecond ?? 0;
  const burst = Math.max(1, throttle?.burst ?? Math.ceil(2 * perSecond));
  const buckets = perSecond > 0 ? new TokenBuckets(perSecond, burst) : undefined;
  const authFailures = throttle?.authFailures ?? 0;
  const failures = authFailures > 0 ? new FailedAuthentications(authFailures, throttle?.authWindowMs ?? 60_000) : undefined;
  /** Lookups of a key in flight, shared by the requests that send it meanwhile: a burst costs one query. */
  const lookups = new Map<string, Promise<ApiClient | undefined>>();
  const lookup = (keyHash: string) => {
    let found = lookups.get(keyHash);
    if (!found) {
      found = findClientByKeyHash(db, keyHash).finally(() => lookups.delete(keyHash));
      lookups.set(keyHash, found);
    }
    return found;
  };

  /**
   * The caller, named by exactly one Authorization header: two are ambiguous (RFC 6750 3.1),
   * whatever they hold. An address refused for its failed authentications is answered before
   * its key is looked up; a client over its rate after; a key whose scope is not the route's
   * (`scope`: the order and webhook routes `orders`, the /admin routes `admin`) last, with 403.
   */
  const caller = async (req: IncomingMessage, scope: ApiScope = 'orders'): Promise<ApiClient> => {
    const count = req.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'authorization').length;
    if (count > 1) throw new Problem('invalid-request', `send one Authorization header, not ${count}`);
    const key = bearerKey(req);
    const keyHash = key === undefined ? undefined : hashKey(key);
    const admission = failures?.admit(sourceOf(req.socket.remoteAddress), keyHash);
    if (admission && admission.retryAfterSeconds > 0) {
      metrics.throttledRequests.inc({ reason: 'auth_failures' });
      const wait = String(admission.retryAfterSeconds);
      throw new Problem('authentication-throttled', `too many unknown keys from this address; retry in ${wait} s`, {}, { 'Retry-After': wait });
    }
    if (keyHash === undefined) throw missingKey();
    let client: ApiClient | undefined;
    try {
      client = await lookup(keyHash);
    } catch (err) {
      if (admission && 'settle' in admission) admission.settle(undefined);
      throw err;
    }
    if (admission && 'settle' in admission) admission.settle(client !== undefined);
    if (!client) throw unknownKey();
    const wait = buckets?.take(client.id) ?? 0;
    if (wait > 0) {
      metrics.throttledRequests.inc({ reason: 'rate_limit' });
      throw new Problem('rate-limited', `over ${perSecond} requests per second (bursts of ${burst}); retry in ${wait} s`, {}, { 'Retry-After': String(wait) });
    }
    if (client.scope !== scope) throw wrongScope(client, scope);
    return client;
  };
  return {
    caller,
    sweep: () => {
      buckets?.sweep();
      failures?.sweep();
    },
  };
}

interface Route {
  method: string;
  path: string;
  handler: Handler;
}

interface RouteContext {
  db: Db;
  temporal: Client;
  useCaseDeps: CreateOrderDeps;
  caller(req: IncomingMessage, scope?: ApiScope): Promise<ApiClient>;
  webhooks: ApiOptions['webhooks'];
  metrics: SagaMetrics;
  log: (line: Record<string, unknown>) => void;
  temporalUiUrl?: string;
}

/** The API's routes: the method, the path pattern (`:name` for a segment) and the handler of each. */
function apiRoutes(ctx: RouteContext): Route[] {
  const { db, temporal, useCaseDeps, caller, metrics, log } = ctx;

  const createOrder: Handler = async (req, _params, query, arrivedAt) => {
    const client = await caller(req);
    const key = req.headers['idempotency-key'];
    if (key === undefined) throw new Problem('idempotency-key-missing');
    if (typeof key !== 'string' || !IDEMPOTENCY_KEY_PATTERN.test(key)) {
      throw new Problem('idempotency-key-invalid', '1 to 255 visible ASCII characters');
    }
    const waitMs = parseWait(query.get('wait'));
    const raw = await readBody(req);
    const order = validate(createOrderRequest, raw);
    const outcome = await createOrderUseCase(useCaseDeps, { clientId: client.id, idempotencyKey: key, raw, order, waitMs, arrivedAt });
    switch (outcome.kind) {
      case 'key-reused':
        throw new Problem('idempotency-key-reused');
      case 'in-flight':
        throw new Problem('request-in-flight', undefined, {}, { 'Retry-After': String(outcome.retryAfterSeconds) });
      case 'unavailable':
        throw new Problem('unavailable', redactAddresses(outcome.message), {}, { 'Retry-After': '1' });
      case 'answer':
        break;
      default:
        throw new Error(`createOrder: no answer for the outcome ${JSON.stringify(outcome satisfies never)}`);
    }
    const headers: Record<string, string> = { 'Content-Type': JSON_TYPE, Location: `/orders/${outcome.orderId}` };
    if (outcome.replayed) {
      metrics.idempotentReplays.inc({ layer: 'http', step: 'create-order' });
      headers['Idempotent-Replayed'] = 'true';
    } else {
      log({ msg: 'order created', orderId: outcome.orderId, workflowId: orderWorkflowId(outcome.orderId), clientId: client.id, healed: outcome.healed });
    }
    return { status: outcome.status, body: outcome.body, headers };
  };
  /** The client's own order named by the path, or 404 alike for malformed, unknown and other clients' IDs. */
  async function ownOrder(clientId: string, id: string | undefined): Promise<OrderRow> {
    const row = id !== undefined && ORDER_ID_PATTERN.test(id) ? await findOrder(db, id, clientId) : undefined;
    if (!row) throw new Problem('not-found', `no order ${JSON.stringify(id ?? '')}`);
    return row;
  }

  const listOrders: Handler = async (req, _params, query) => json(200, await listClientOrders(db, (await caller(req)).id, query));

  const getOrder: Handler = async (req, params) => {
    const client = await caller(req);
    const row = await ownOrder(client.id, params.id);
    return json(200, orderView(row, await liveSaga(temporal, row.id, undefined, db)));
  };

  const cancelOrder: Handler = async (req, params) => {
    const client = await caller(req);
    const row = await ownOrder(client.id, params.id);
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    const { reason } = hasBody ? validate(cancelRequest, await readBody(req)) : { reason: undefined };
    const outcome = await cancelOrderUseCase(useCaseDeps, row, reason ?? 'cancelled by the customer');
    switch (outcome.kind) {
      case 'accepted':
        return json(202, { id: row.id, cancel: 'accepted' }, { Location: `/orders/${row.id}` });
      case 'refused':
        throw new Problem('cancel-refused', redactAddresses(outcome.reason));
      case 'unavailable':
        throw new Problem('unavailable', redactAddresses(outcome.message), {}, { 'Retry-After': '1' });
    }
  };

  // Webhook endpoints: each client sees, changes and replays only its own.
  const WEBHOOK_ID = /^whe_[0-9a-f]{20}$/;
  const notFoundEndpoint = (id: string | undefined) => new Problem('not-found', `no webhook endpoint ${JSON.stringify(id ?? '')}`);
  const createWebhook: Handler = async (req) => {
    const client = await caller(req);
    const { url } = validate(webhookRequest, await readBody(req));
    const sealingKey = ctx.webhooks?.sealingKey;
    if (!sealingKey) throw new Problem('webhooks-not-configured', 'this server has no WEBHOOK_SECRETS_KEY to keep signing secrets with');
    try {
      const endpoint = await createEndpoint(db, { clientId: client.id, url, sealingKey, allowPrivate: ctx.webhooks?.allowPrivate ?? false });
      log({ msg: 'webhook endpoint created', endpointId: endpoint.id, clientId: client.id });
      return json(201, endpoint, { Location: `/webhooks/${endpoint.id}` });
    } catch (err) {
      if (err instanceof EndpointRefused) throw new Problem('invalid-request', `url: ${err.message}`, { errors: [{ path: 'url', message: err.message }] });
      throw err;
    }
  };
  const listWebhooks: Handler = async (req) => json(200, { endpoints: await listEndpoints(db, (await caller(req)).id) });
  const deleteWebhook: Handler = async (req, params) => {
    const client = await caller(req);
    if (!WEBHOOK_ID.test(params.endpoint ?? '') || !(await deleteEndpoint(db, client.id, params.endpoint!))) throw notFoundEndpoint(params.endpoint);
    return { status: 204, body: '' };
  };
  const enableWebhook: Handler = async (req, params) => {
    const client = await caller(req);
    if (!WEBHOOK_ID.test(params.endpoint ?? '') || !(await enableEndpoint(db, client.id, params.endpoint!))) throw notFoundEndpoint(params.endpoint);
    const endpoint = (await listEndpoints(db, client.id)).find((e) => e.id === params.endpoint);
    return json(200, endpoint);
  };
  const webhookDeliveries: Handler = async (req, params) => {
    const client = await caller(req);
    const found = WEBHOOK_ID.test(params.endpoint ?? '') ? await listDeliveries(db, client.id, params.endpoint!) : undefined;
    if (!found) throw notFoundEndpoint(params.endpoint);
    return json(200, { deliveries: found });
  };
  const replayWebhook: Handler = async (req, params) => {
    const client = await caller(req);
    const ok =
      WEBHOOK_ID.test(params.endpoint ?? '') &&
      /^msg_[0-9a-f]{32}$/.test(params.delivery ?? '') &&
      (await replayDelivery(db, client.id, params.endpoint!, params.delivery!));
    if (!ok) throw new Problem('not-found', `no delivery ${JSON.stringify(params.delivery ?? '')} of this endpoint`);
    return json(202, { id: params.delivery, replay: 'accepted' });
  };

  // The admin API: operators' views of and actions on sagas (src/operator), admin-scope keys only.
  // Every action is recorded in operator_actions under `admin:<client name>`.
  const operatorDeps: OperatorDeps = { db, temporal, namespace: temporal.options.namespace, temporalUiUrl: ctx.temporalUiUrl };
  const admin = async (req: IncomingMessage) => `admin:${(await caller(req, 'admin')).name}`;
  /** An operator's refusal as a problem: an unknown order 404, a selection or value refused 400, a saga that cannot 409. */
  const refusal = (err: unknown, kind: 'invalid-request' | 'action-refused'): never => {
    if (err instanceof NoSuchOrder) throw new Problem('not-found', err.message);
    if (err instanceof InvalidCursor) throw new Problem('invalid-request', `cursor: ${err.message}`, { errors: [{ path: 'cursor', message: err.message }] });
    if (err instanceof OperatorError) throw new Problem(kind, redactAddresses(err.message));
    throw err;
  };
  const adminFilters = (f: { status?: SagaListFilter['status']; saga_status?: string; step?: string; older_than?: string; client?: string }): SagaListFilter => ({
    status: f.status,
    sagaStatus: f.saga_status,
    step: f.step,
    olderThanMs: f.older_than === undefined ? undefined : parseDuration(f.older_than),
    client: f.client,
  });
  const adminListSagas: Handler = async (req, _params, query) => {
    await admin(req);
    const raw: Record<string, string> = {};
    for (const [name, value] of query) {
      if (name in raw) throw new Problem('invalid-request', `${name}: given more than once`, { errors: [{ path: name, message: 'given more than once' }] });
      raw[name] = value;
    }
    const q = validate(adminSagaListQuery, raw);
    try {
      const page = await listSagas(operatorDeps, adminFilters(q), { limit: q.limit ?? 20, cursor: q.cursor });
      return json(200, { sagas: page.sagas, next_cursor: page.nextCursor });
    } catch (err) {
      return refusal(err, 'invalid-request');
    }
  };
  const adminShowSaga: Handler = async (req, params) => {
    await admin(req);
    const detail = params.id !== undefined && ORDER_ID_PATTERN.test(params.id) ? await showSaga(operatorDeps, params.id) : undefined;
    if (!detail) throw new Problem('not-found', `no order ${JSON.stringify(params.id ?? '')}`);
    return json(200, detail);
  };
  const adminRetryCompensation: Handler = async (req, params) => {
    const by = await admin(req);
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    const { note } = hasBody ? validate(retryCompensationRequest, await readBody(req)) : { note: undefined };
    try {
      return json(200, await retryCompensation({ client: temporal, db, orderId: params.id ?? '', by, note }));
    } catch (err) {
      return refusal(err, 'action-refused');
    }
  };
  const adminResolve: Handler = async (req, params) => {
    const by = await admin(req);
    const { note } = validate(resolveRequest, await readBody(req));
    try {
      return json(200, await resolve({ client: temporal, db, orderId: params.id ?? '', by, note }));
    } catch (err) {
      return refusal(err, 'action-refused');
    }
  };
  const adminBulk =
    (action: 'cancel' | 'terminate'): Handler =>
    async (req) => {
      const by = await admin(req);
      const body = validate(adminBulkRequest, await readBody(req));
      if (action === 'cancel' && body.confirm !== undefined) {
        throw new Problem('invalid-request', 'confirm: only terminate takes it', { errors: [{ path: 'confirm', message: 'only terminate takes it' }] });
      }
      try {
        const request = {
          client: temporal,
          db,
          namespace: temporal.options.namespace,
          by,
          selection: { query: body.query, filters: body.filters && adminFilters(body.filters) },
          dryRun: body.dry_run ?? false,
          limit: body.limit,
          reason: body.reason,
        };
        return json(200, action === 'cancel' ? await cancelSagas(request) : await terminateSagas({ ...request, confirm: body.confirm ?? false }));
      } catch (err) {
        return refusal(err, 'invalid-request');
      }
    };

  const ready: Handler = async () => {
    const r = await checkReadiness({
      database: () => db.query('SELECT 1'),
      temporal: () => temporal.connection.withDeadline(Date.now() + 1500, () => temporal.connection.workflowService.getSystemInfo({})),
    });
    // Public: what failed is named, where it runs is not.
    const checks = Object.fromEntries(Object.entries(r.checks).map(([name, result]) => [name, redactAddresses(result)]));
    return json(r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', checks });
  };

  const openapi = JSON.stringify(buildOpenApi());
  return [
    { method: 'GET', path: '/healthz', handler: async () => json(200, { status: 'ok' }) },
    { method: 'GET', path: '/readyz', handler: ready },
    {
      method: 'GET',
      path: '/metrics',
      handler: async () => ({ status: 200, body: await metrics.text(), headers: { 'Content-Type': metrics.registry.contentType } }),
    },
    { method: 'GET', path: '/openapi.json', handler: async () => ({ status: 200, body: openapi, headers: { 'Content-Type': JSON_TYPE } }) },
    // The rendered reference (Swagger UI), public like the document it renders.
    ...Object.entries(referenceAssets()).map(([path, asset]) => ({
      method: 'GET',
      path,
      handler: async () => ({ status: 200, body: asset.body, headers: { 'Content-Type': asset.type, 'Cache-Control': 'public, max-age=3600' } }),
    })),
    { method: 'POST', path: '/orders', handler: createOrder },
    { method: 'GET', path: '/orders', handler: listOrders },
    { method: 'GET', path: '/orders/:id', handler: getOrder },
    { method: 'POST', path: '/orders/:id/cancel', handler: cancelOrder },
    { method: 'POST', path: '/webhooks', handler: createWebhook },
    { method: 'GET', path: '/webhooks', handler: listWebhooks },
    { method: 'DELETE', path: '/webhooks/:endpoint', handler: deleteWebhook },
    { method: 'POST', path: '/webhooks/:endpoint/enable', handler: enableWebhook },
    { method: 'GET', path: '/webhooks/:endpoint/deliveries', handler: webhookDeliveries },
    { method: 'POST', path: '/webhooks/:endpoint/deliveries/:delivery/replay', handler: replayWebhook },
    { method: 'GET', path: '/admin/sagas', handler: adminListSagas },
    { method: 'POST', path: '/admin/sagas/cancel', handler: adminBulk('cancel') },
    { method: 'POST', path: '/admin/sagas/terminate', handler: adminBulk('terminate') },
    { method: 'GET', path: '/admin/sagas/:id', handler: adminShowSaga },
    { method: 'POST', path: '/admin/sagas/:id/retry-compensation', handler: adminRetryCompensation },
    { method: 'POST', path: '/admin/sagas/:id/resolve', handler: adminResolve },
  ];
}

/** Answers one request from the route table: one answer, one metric and one access-log line per request. */
/** Routes that answer while the process is still starting: the probes, and the documents that need no dependency. */
const SERVED_WHILE_STARTING = (route: string) => route === '/healthz' || route === '/metrics' || route === '/openapi.json' || route.startsWith('/docs');

function requestHandler(
  routes: Route[],
  metrics: SagaMetrics,
  log: (line: Record<string, unknown>) => void,
  startup?: () => Record<string, string>,
) {
  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const arrivedAt = Date.now();
    let reply: Reply | undefined;
    let path: string | undefined;
    let route = 'unmatched';
    let orderId: string | undefined;
    // One access-log line per request, after the answer: probes and assets at debug, the rest at info.
    const access = (status: number) => {
      const quiet = PROBES.has(route) || route.startsWith('/docs');
      const id = orderId ?? reply?.headers?.Location?.split('/').pop();
      log({
        level: quiet ? 'debug' : status >= 500 ? 'error' : 'info',
        msg: 'request',
        method: req.method,
        route,
        path,
        status,
        durationMs: Math.round(Number(process.hrtime.bigint() - started) / 1e5) / 10,
        ...(id ? { orderId: id, workflowId: orderWorkflowId(id) } : {}),
        ...(reply?.headers?.['Idempotent-Replayed'] ? { replayed: true } : {}),
        remote: req.socket.remoteAddress,
        userAgent: req.headers['user-agent'],
      });
    };
    try {
      const target = originForm(req.url);
      if (!target) throw new Problem('invalid-request', 'the request target must be a path: one leading "/", visible ASCII, no "\\" or "#"');
      const at = target.path;
      path = at;
      if (declaredTooLarge(req)) throw new Problem('payload-too-large', `Content-Length over ${MAX_BODY_BYTES} bytes`);
      const candidates = routes
        .map((r) => ({ r, params: matchPath(r.path, at) }))
        .filter((c) => c.params !== undefined);
      // HEAD is answered wherever GET is (RFC 9110 9.3.2); Node sends the headers without the body.
      const method = req.method === 'HEAD' ? 'GET' : req.method;
      const hit = candidates.find((c) => c.r.method === method);
      if (!hit && candidates.length) {
        const methods = candidates.map((c) => c.r.method);
        const allow = (methods.includes('GET') ? [...methods, 'HEAD'] : methods).join(', ');
        throw new Problem('method-not-allowed', `${req.method} is not allowed on ${at}`, {}, { Allow: allow });
      }
      if (!hit) throw new Problem('not-found', `no route ${at}`);
      const { r, params } = hit;
      route = r.path;
      orderId = params?.id;
      const pending = startup?.() ?? {};
      if (Object.keys(pending).length && !SERVED_WHILE_STARTING(route)) {
        const waiting = Object.keys(pending).join(' and ');
        if (route === '/readyz') {
          // Public: what is awaited is named, where it runs is not.
          const checks = Object.fromEntries(Object.entries(pending).map(([name, why]) => [name, redactAddresses(why)]));
          reply = json(503, { status: 'not ready', checks }, { 'Retry-After': '2' });
        } else {
          throw new Problem('unavailable', `the API is starting: waiting for ${waiting}`, {}, { 'Retry-After': '2' });
        }
      }
      reply ??= await inSpan(
        `${req.method} ${route}`,
        { 'http.request.method': req.method ?? '?', 'http.route': route },
        async (span) => {
          const answer = await r.handler(req, params ?? {}, target.query, arrivedAt);
          span.setAttribute('http.response.status_code', answer.status);
          return answer;
        },
        SpanKind.SERVER,
      );
    } catch (err) {
      if (clientGone(req, err)) {
        // Nobody is left to answer (the body was cut short, the socket closed): not a server error.
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        metrics.httpRequests.observe({ method: req.method ?? '?', route, status: '499' }, seconds);
        res.destroy();
        access(499);
        return;
      }
      reply = problemReply(err, path, log);
    }
    // A body left unread (over the limit, or never wanted) is not drained: the connection closes after the answer.
    const close = req.complete ? {} : { Connection: 'close' };
    res.writeHead(reply.status, { 'Content-Length': Buffer.byteLength(reply.body), ...reply.headers, ...close });
    res.end(reply.body);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics.httpRequests.observe({ method: req.method ?? '?', route, status: String(reply.status) }, seconds);
    access(reply.status);
  };
}

/** A JSON body; an integer written otherwise (`1.0`, `1e3`, `1999.00000000000001`) is refused, never rounded. */
async function readBody(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!isJsonContentType(type)) throw new Problem('unsupported-media-type', `got "${type}"`);
  const text = await readText(req);
  const value = parseJson(text);
  const inexact = integersNotWrittenAsIntegers(text);
  if (inexact.length) {
    const errors = inexact.map((path) => ({ path: path || '(body)', message: 'must be an integer written without a fraction or exponent' }));
    throw new Problem('invalid-request', errors.map((e) => `${e.path}: ${e.message}`).join('; '), { errors });
  }
  return value;
}

function validate<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const errors = parsed.error.issues.map((i) => ({ path: i.path.join('.') || '(body)', message: i.message }));
  throw new Problem('invalid-request', errors.map((e) => `${e.path}: ${e.message}`).join('; '), { errors });
}

/** `?wait=` as `500ms`, `5s` or plain seconds, at most WAIT_MAX_MS. */
export function parseWait(value: string | null): number {
  if (value === null) return 0;
  const m = /^(\d{1,6})(ms|s)?$/.exec(value);
  if (!m) throw new Problem('invalid-request', 'wait must look like 500ms, 5s or 5');
  const ms = Number(m[1]) * (m[2] === 'ms' ? 1 : 1000);
  if (ms > WAIT_MAX_MS) throw new Problem('invalid-request', `wait is at most ${WAIT_MAX_MS / 1000}s`);
  return ms;
}

/** The client went away mid-request: its body was cut short or its socket closed. */
function clientGone(req: IncomingMessage, err: unknown): boolean {
  const e = err as NodeJS.ErrnoException | null;
  return e?.code === 'ECONNRESET' || e?.message === 'aborted' || req.socket.destroyed;
}

function problemReply(err: unknown, instance: string | undefined, log: (l: Record<string, unknown>) => void): Reply {
  let problem: Problem;
  if (err instanceof Problem) problem = err;
  else if (err instanceof HttpError) problem = new Problem(err.status === 413 ? 'payload-too-large' : 'invalid-request', err.message);
  // The database is unreachable or restarting: nothing was written, the same request may be retried.
  else if (isConnectionError(err)) problem = new Problem('unavailable', 'the database is unavailable', {}, { 'Retry-After': '1' });
  // Input the validation let through that PostgreSQL cannot store: refused, and nothing was written.
  else if (isPermanentDataError(err) && (err as { code: string }).code.startsWith('22')) {
    problem = new Problem('invalid-request', 'the request holds data that cannot be stored');
  } else {
    log({ level: 'error', msg: 'unhandled error', error: (err as Error)?.stack ?? String(err) });
    problem = new Problem('internal');
  }
  return {
    status: problem.status,
    body: JSON.stringify(problem.body(instance)),
    headers: { 'Content-Type': 'application/problem+json', ...problem.headers },
  };
}

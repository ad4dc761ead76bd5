import { z } from 'zod';
import { problems, problemTypeUri } from './problem';
import {
  adminBulkRequest,
  adminBulkResponse,
  adminSagaDetail,
  adminSagaList,
  adminSagaListQuery,
  cancelRequest,
  createOrderRequest,
  LIST_LIMIT_DEFAULT,
  LIST_LIMIT_MAX,
  orderList,
  orderSummary,
  orderView,
  problemDetails,
  resolveRequest,
  resolveResponse,
  retryCompensationRequest,
  retryCompensationResponse,
  WAIT_MAX_MS,
  webhookDeliveries,
  webhookEndpoint,
  webhookEndpointCreated,
  webhookRequest,
} from './schemas';

const schema = (s: z.ZodType) => {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(s, { target: 'draft-2020-12', io: 'input' }) as Record<string, unknown>;
  return rest;
};

type Name = keyof typeof problems;

const HEADERS = {
  'Retry-After': { description: 'Seconds to wait before retrying (with the same Idempotency-Key, where the request had one)', schema: { type: 'integer', minimum: 0 } },
  Location: { description: 'The resource created: /orders/{id} or /webhooks/{endpoint}', schema: { type: 'string' } },
  'Idempotent-Replayed': {
    description: 'true when this is the first answer to this Idempotency-Key, replayed byte for byte',
    schema: { type: 'string', enum: ['true'] },
  },
  'WWW-Authenticate': { description: 'Bearer', schema: { type: 'string' } },
  Allow: { description: 'The methods the resource allows', schema: { type: 'string' } },
} as const;
type Header = keyof typeof HEADERS;

const headerRefs = (names: Header[]) => Object.fromEntries(names.map((h) => [h, { $ref: `#/components/headers/${h}` }]));

/** A problem answer, naming the problem types it may carry. */
const problem = (description: string, types: Name[], headers: Header[] = []) => ({
  description: `${description}. Problem type${types.length > 1 ? 's' : ''}: ${types.map((t) => problemTypeUri(t)).join(', ')}`,
  ...(headers.length ? { headers: headerRefs(headers) } : {}),
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});

const orderResponse = (description: string, headers: Header[] = []) => ({
  description,
  ...(headers.length ? { headers: headerRefs(headers) } : {}),
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Order' } } },
});

/** What any route can answer: a dependency lost, an unexpected error. */
const common = {
  '500': problem('An unexpected error; nothing was half-written, retry with the same Idempotency-Key', ['internal']),
  '503': problem('The database or Temporal is unreachable; retry after Retry-After with the same Idempotency-Key', ['unavailable'], ['Retry-After']),
};
/**
 * A 400 any route can answer, beside its own reasons: the request target is routed only as an
 * origin-form path (one leading '/', visible ASCII, no '\\' or '#'), and two Authorization headers are ambiguous.
 */
const badRequest = (own?: string, types: Name[] = ['invalid-request']) =>
  problem(`${own ? `${own}; or a` : 'A'} request target that is not a plain path (\`//host/…\`, \`http://…\`, a backslash), or two Authorization headers`, types);
const malformed = { '400': badRequest() };
const authenticated = {
  '401': problem('Missing, malformed or unknown API key', ['unauthorized'], ['WWW-Authenticate']),
  '403': problem("A known key of another scope: the order and webhook routes take ordinary keys, /admin admin keys; the detail names the scope needed", ['forbidden']),
  '405': problem('Method not allowed on this path', ['method-not-allowed'], ['Allow']),
  '429': problem(
    'Throttled, nothing done: this API client is over its rate, or this address sent too many unknown keys and is refused for a while',
    ['rate-limited', 'authentication-throttled'],
    ['Retry-After'],
  ),
};

/** A generated object schema whose array property refers to a named schema rather than repeating it. */
const withItemsRef = (s: Record<string, unknown>, property: string, name: string) => {
  const properties = s.properties as Record<string, Record<string, unknown>>;
  return { ...s, properties: { ...properties, [property]: { ...properties[property], items: { $ref: `#/components/schemas/${name}` } } } };
};

/** OpenAPI 3.1, generated from the zod schemas the server validates with; lint-clean under Redocly's recommended rules. */
export function buildOpenApi(opts: { serverUrl?: string } = {}): Record<string, unknown> {
  const idParam = {
    name: 'id',
    in: 'path',
    required: true,
    description: 'The order ID (ord_…); any other value is a 404',
    schema: { type: 'string' },
  };
  const endpointParam = {
    name: 'endpoint',
    in: 'path',
    required: true,
    description: 'The webhook endpoint ID (whe_…)',
    schema: { type: 'string' },
  };
  const adminSecurity = [{ adminBearer: [] }];
  const bulkAnswer = {
    description: 'What was selected and what became of each saga (nothing touched on a dry run)',
    content: { 'application/json': { schema: { $ref: '#/components/schemas/AdminBulkResult' } } },
  };
  const listQuery = schema(adminSagaListQuery) as { properties: Record<string, Record<string, unknown>> };
  const adminSagaListQueryParams = Object.fromEntries(
    Object.entries(listQuery.properties).map(([name, s]) => {
      const { description, ...rest } = s;
      return [name, { description: (description as string | undefined) ?? (name === 'cursor' ? 'the `next_cursor` of the page before (opaque)' : 'sagas per page (20)'), schema: rest }];
    }),
  );
  const problemSchema = schema(problemDetails) as { properties: Record<string, Record<string, unknown>> };
  problemSchema.properties.type = {
    type: 'string',
    description: 'Stable URI of the problem: branch on it, not on the title',
    enum: Object.keys(problems).map((k) => problemTypeUri(k as Name)),
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'sagaflow',
      version: '0.1.0',
      description:
        'Start, watch and cancel order sagas. Every mutating request is safe to retry with the same Idempotency-Key. ' +
        'Errors are RFC 9457 problem details (application/problem+json) whose `type` is one of the Problem schema\'s URIs.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: opts.serverUrl ?? '/', description: 'the API that serves this document' }],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'An API key from `sagaflow clients create NAME` (scope orders): the order and webhook routes' },
        adminBearer: { type: 'http', scheme: 'bearer', description: 'An admin key from `sagaflow clients create NAME --admin` (scope admin): the /admin routes only' },
      },
      headers: HEADERS,
      schemas: {
        CreateOrder: schema(createOrderRequest),
        Cancel: schema(cancelRequest),
        Order: schema(orderView),
        OrderSummary: schema(orderSummary),
        OrderList: withItemsRef(schema(orderList), 'orders', 'OrderSummary'),
        Problem: problemSchema,
        CreateWebhook: schema(webhookRequest),
        WebhookEndpoint: schema(webhookEndpoint),
        WebhookEndpointCreated: schema(webhookEndpointCreated),
        WebhookDeliveries: schema(webhookDeliveries),
        AdminSagaList: schema(adminSagaList),
        AdminSagaDetail: schema(adminSagaDetail),
        RetryCompensation: schema(retryCompensationRequest),
        RetryCompensationResult: schema(retryCompensationResponse),
        Resolve: schema(resolveRequest),
        ResolveResult: schema(resolveResponse),
        AdminBulkAction: schema(adminBulkRequest),
        AdminBulkResult: schema(adminBulkResponse),
        Readiness: {
          type: 'object',
          required: ['status', 'checks'],
          properties: {
            status: { type: 'string', enum: ['ready', 'not ready'] },
            checks: { type: 'object', additionalProperties: { type: 'string', description: "'ok', or what failed" } },
          },
        },
      },
    },
    security: [{ bearer: [] }],
    paths: {
      '/orders': {
        post: {
          operationId: 'createOrder',
          summary: 'Create an order and start its saga',
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: true,
              description: 'Scoped to the API client: the same key and body give the same answer, a different body a 422',
              schema: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7e]+$' },
            },
            {
              name: 'wait',
              in: 'query',
              required: false,
              description: `hold the answer until the saga ends or this long passes (500ms, 5s; at most ${WAIT_MAX_MS / 1000}s)`,
              schema: { type: 'string', pattern: '^\\d+(ms|s)?$' },
            },
          ],
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/CreateOrder' } } } },
          responses: {
            '201': orderResponse('Created (or, with Idempotent-Replayed: true, the first answer again)', ['Location', 'Idempotent-Replayed']),
            '400': badRequest('Malformed body or wait (an integer written with a fraction or exponent, such as 1999.0, is malformed), or a missing or malformed Idempotency-Key', [
              'invalid-request',
              'idempotency-key-missing',
              'idempotency-key-invalid',
            ]),
            ...authenticated,
            '409': problem('The first request with this key is still in flight', ['request-in-flight'], ['Retry-After']),
            '413': problem('Body over 64 KiB: a larger Content-Length is refused before the body is read, with Expect: 100-continue without a 100', ['payload-too-large']),
            '415': problem('Body is not application/json', ['unsupported-media-type']),
            '422': problem('Key reused with a different body', ['idempotency-key-reused']),
            ...common,
          },
        },
        get: {
          operationId: 'listOrders',
          summary: "The client's own orders, newest first, a page at a time",
          description:
            'Keyset pagination: `next_cursor` continues after the last order of this page, so orders created meanwhile never shift ' +
            'a page, and walking every page sees each order once. A cursor belongs to the filters it was given with: send it with ' +
            'the same `status`, `created_after` and `created_before` (any `limit`). The saga of each order is at GET /orders/{id}.',
          parameters: [
            { name: 'status', in: 'query', required: false, description: 'only orders with this status', schema: { type: 'string', enum: [...orderView.shape.status.options] } },
            {
              name: 'created_after',
              in: 'query',
              required: false,
              description: 'only orders created strictly after this instant (ISO 8601 with Z or an offset; send "+" as %2B)',
              schema: { type: 'string', format: 'date-time' },
            },
            {
              name: 'created_before',
              in: 'query',
              required: false,
              description: 'only orders created strictly before this instant (ISO 8601 with Z or an offset; send "+" as %2B)',
              schema: { type: 'string', format: 'date-time' },
            },
            {
              name: 'limit',
              in: 'query',
              required: false,
              description: 'orders per page',
              schema: { type: 'integer', minimum: 1, maximum: LIST_LIMIT_MAX, default: LIST_LIMIT_DEFAULT },
            },
            { name: 'cursor', in: 'query', required: false, description: 'the `next_cursor` of the page before (opaque)', schema: { type: 'string' } },
          ],
          responses: {
            '200': { description: 'One page of orders', content: { 'application/json': { schema: { $ref: '#/components/schemas/OrderList' } } } },
            '400': badRequest(
              'A parameter unknown, repeated or malformed, a status that is not one, a limit outside 1 to 100, or a cursor altered or sent with other filters',
            ),
            ...authenticated,
            ...common,
          },
        },
      },
      '/orders/{id}': {
        get: {
          operationId: 'getOrder',
          summary: 'The order and its saga, live',
          parameters: [idParam],
          responses: {
            '200': orderResponse('The order'),
            '400': badRequest('A path that is not valid percent-encoded UTF-8'),
            ...authenticated,
            '404': problem('No such order for this client', ['not-found']),
            ...common,
          },
        },
      },
      '/orders/{id}/cancel': {
        post: {
          operationId: 'cancelOrder',
          summary: 'Cancel the saga; honoured until the pivot (the shipment) starts',
          parameters: [idParam],
          requestBody: { required: false, content: { 'application/json': { schema: { $ref: '#/components/schemas/Cancel' } } } },
          responses: {
            '202': { description: 'Accepted: the saga is unwinding (or already cancelled)' },
            '400': badRequest('Malformed body (for example a reason with control characters)'),
            ...authenticated,
            '404': problem('No such order for this client', ['not-found']),
            '409': problem('Refused: past the point of no return, or the order already ended', ['cancel-refused']),
            '413': problem('Body over 64 KiB: a larger Content-Length is refused before the body is read, with Expect: 100-continue without a 100', ['payload-too-large']),
            '415': problem('Body is not application/json', ['unsupported-media-type']),
            ...common,
          },
        },
      },
      '/webhooks': {
        post: {
          operationId: 'createWebhook',
          summary: "Register an endpoint for the client's order events (Standard Webhooks; the secret is shown once)",
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/CreateWebhook' } } } },
          responses: {
            '201': {
              description: 'Registered; the signing secret is in this answer only',
              headers: headerRefs(['Location']),
              content: { 'application/json': { schema: { $ref: '#/components/schemas/WebhookEndpointCreated' } } },
            },
            '400': badRequest('Malformed body, or a URL refused (not http(s), credentials, a private address in production)'),
            ...authenticated,
            '413': problem('Body over 64 KiB: a larger Content-Length is refused before the body is read, with Expect: 100-continue without a 100', ['payload-too-large']),
            '415': problem('Body is not application/json', ['unsupported-media-type']),
            '501': problem('The server has no key to keep signing secrets with', ['webhooks-not-configured']),
            ...common,
          },
        },
        get: {
          operationId: 'listWebhooks',
          summary: "The client's endpoints (no secrets)",
          responses: {
            '200': {
              description: 'The endpoints',
              content: {
                'application/json': {
                  schema: { type: 'object', required: ['endpoints'], properties: { endpoints: { type: 'array', items: { $ref: '#/components/schemas/WebhookEndpoint' } } } },
                },
              },
            },
            ...malformed,
            ...authenticated,
            ...common,
          },
        },
      },
      '/webhooks/{endpoint}': {
        delete: {
          operationId: 'deleteWebhook',
          summary: 'Delete an endpoint: nothing more is sent to it',
          parameters: [endpointParam],
          responses: {
            '204': { description: 'Deleted' },
            ...malformed,
            ...authenticated,
            '404': problem('No such endpoint for this client', ['not-found']),
            ...common,
          },
        },
      },
      '/webhooks/{endpoint}/enable': {
        post: {
          operationId: 'enableWebhook',
          summary: 'Enable an endpoint disabled after failing; its waiting deliveries go out',
          parameters: [endpointParam],
          responses: {
            '200': { description: 'Enabled', content: { 'application/json': { schema: { $ref: '#/components/schemas/WebhookEndpoint' } } } },
            ...malformed,
            ...authenticated,
            '404': problem('No such endpoint for this client', ['not-found']),
            ...common,
          },
        },
      },
      '/webhooks/{endpoint}/deliveries': {
        get: {
          operationId: 'listWebhookDeliveries',
          summary: "The endpoint's latest deliveries, each with every attempt",
          parameters: [endpointParam],
          responses: {
            '200': { description: 'The deliveries, newest first', content: { 'application/json': { schema: { $ref: '#/components/schemas/WebhookDeliveries' } } } },
            ...malformed,
            ...authenticated,
            '404': problem('No such endpoint for this client', ['not-found']),
            ...common,
          },
        },
      },
      '/webhooks/{endpoint}/deliveries/{delivery}/replay': {
        post: {
          operationId: 'replayWebhookDelivery',
          summary: 'Send a delivery again, with the same webhook-id and a fresh round of retries',
          parameters: [
            endpointParam,
            { name: 'delivery', in: 'path', required: true, description: 'The delivery ID (msg_…)', schema: { type: 'string' } },
          ],
          responses: {
            '202': { description: 'Accepted: the delivery is due now' },
            ...malformed,
            ...authenticated,
            '404': problem('No such delivery of this endpoint for this client', ['not-found']),
            ...common,
          },
        },
      },
      '/admin/sagas': {
        get: {
          operationId: 'adminListSagas',
          summary: 'Every client\'s sagas, newest order first, with the filters of `sagaflow sagas list` (admin keys only)',
          security: adminSecurity,
          parameters: [
            ...Object.entries(adminSagaListQueryParams).map(([name, p]) => ({ name, in: 'query', required: false, ...p })),
          ],
          responses: {
            '200': { description: 'One page of sagas', content: { 'application/json': { schema: { $ref: '#/components/schemas/AdminSagaList' } } } },
            '400': badRequest('A parameter unknown, repeated or malformed, an unknown client, or a cursor altered or sent with other filters'),
            ...authenticated,
            ...common,
          },
        },
      },
      '/admin/sagas/cancel': {
        post: {
          operationId: 'adminCancelSagas',
          summary: 'Cancel the selected open sagas with their own cancel: each accepts before its pivot or refuses after it (admin keys only)',
          description: 'One operator_actions row per saga touched, and one for a dry run.',
          security: adminSecurity,
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/AdminBulkAction' } } } },
          responses: {
            '200': bulkAnswer,
            '400': badRequest('Malformed body, no selection, a visibility query Temporal refuses, or confirm sent'),
            ...authenticated,
            '413': problem('Body over 64 KiB', ['payload-too-large']),
            '415': problem('Body is not application/json', ['unsupported-media-type']),
            ...common,
          },
        },
      },
      '/admin/sagas/terminate': {
        post: {
          operationId: 'adminTerminateSagas',
          summary: 'Terminate the selected open sagas; they run NO compensation (admin keys only)',
          description:
            'Requires `confirm: true` (not for a dry run): what a terminated saga did stays done. After it, for each order: ' +
            'GET /admin/sagas/{id}, undo by hand what it left, then POST /admin/sagas/{id}/resolve.',
          security: adminSecurity,
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/AdminBulkAction' } } } },
          responses: {
            '200': bulkAnswer,
            '400': badRequest('Malformed body, no selection, a visibility query Temporal refuses, or no confirm'),
            ...authenticated,
            '413': problem('Body over 64 KiB', ['payload-too-large']),
            '415': problem('Body is not application/json', ['unsupported-media-type']),
            ...common,
          },
        },
      },
      '/admin/sagas/{id}': {
        get: {
          operationId: 'adminShowSaga',
          summary: 'One saga in full, as `sagaflow sagas show` (admin keys only)',
          security: adminSecurity,
          parameters: [idParam],
          responses: {
            '200': { description: 'The order, the saga, its activities, ledger and references', content: { 'application/json': { schema: { $ref: '#/components/schemas/AdminSagaDetail' } } } },
            ...malformed,
            ...authenticated,
            '404': problem('No such order', ['not-found']),
            ...common,
          },
        },
      },
      '/admin/sagas/{id}/retry-compensation': {
        post: {
          operationId: 'adminRetryCompensation',
          summary: "Rerun a held saga's failed compensations (admin keys only)",
          security: adminSecurity,
          parameters: [idParam],
          requestBody: { required: false, content: { 'application/json': { schema: { $ref: '#/components/schemas/RetryCompensation' } } } },
          responses: {
            '200': { description: 'Which compensations succeeded, which failed again', content: { 'application/json': { schema: { $ref: '#/components/schemas/RetryCompensationResult' } } } },
            '400': badRequest('Malformed body'),
            ...authenticated,
            '404': problem('No such order', ['not-found']),
            '409': problem('Refused: the saga is not held for an operator, or closed (then resolve it)', ['action-refused']),
            '413': problem('Body over 64 KiB', ['payload-too-large']),
            '415': problem('Body is not application/json', ['unsupported-media-type']),
            ...common,
          },
        },
      },
      '/admin/sagas/{id}/resolve': {
        post: {
          operationId: 'adminResolve',
          summary: "Record the order's failed compensations as settled by hand (admin keys only)",
          security: adminSecurity,
          parameters: [idParam],
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/Resolve' } } } },
          responses: {
            '200': { description: 'The compensations resolved', content: { 'application/json': { schema: { $ref: '#/components/schemas/ResolveResult' } } } },
            '400': badRequest('Malformed body, or no note'),
            ...authenticated,
            '404': problem('No such order', ['not-found']),
            '409': problem('Refused: nothing left to resolve, or an open saga not held', ['action-refused']),
            '413': problem('Body over 64 KiB', ['payload-too-large']),
            '415': problem('Body is not application/json', ['unsupported-media-type']),
            ...common,
          },
        },
      },
      '/healthz': {
        get: {
          operationId: 'health',
          summary: 'The process is up (liveness)',
          security: [],
          responses: {
            '200': { description: 'up', content: { 'application/json': { schema: { type: 'object', properties: { status: { const: 'ok' } } } } } },
            ...malformed,
            '405': problem('Method not allowed on this path', ['method-not-allowed'], ['Allow']),
          },
        },
      },
      '/readyz': {
        get: {
          operationId: 'ready',
          summary: 'The database and Temporal are reachable (readiness)',
          security: [],
          responses: {
            '200': { description: 'ready', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
            ...malformed,
            '405': problem('Method not allowed on this path', ['method-not-allowed'], ['Allow']),
            '503': { description: 'not ready: the checks say which dependency failed', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
          },
        },
      },
    },
  };
}

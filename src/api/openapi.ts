import { z } from 'zod';
import { problems, problemTypeUri } from './problem';
import { cancelRequest, createOrderRequest, orderView, problemDetails, WAIT_MAX_MS } from './schemas';

const schema = (s: z.ZodType) => {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(s, { target: 'draft-2020-12', io: 'input' }) as Record<string, unknown>;
  return rest;
};

const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});

const orderResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Order' } } },
});

/** OpenAPI 3.1, generated from the zod schemas the server validates with. */
export function buildOpenApi(): Record<string, unknown> {
  const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
  return {
    openapi: '3.1.0',
    info: {
      title: 'sagaflow',
      version: '0.1.0',
      description:
        'Start, watch and cancel order sagas. Every mutating request is safe to retry with the same Idempotency-Key. ' +
        `Problem types: ${Object.keys(problems).map((k) => problemTypeUri(k as keyof typeof problems)).join(', ')}.`,
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        CreateOrder: schema(createOrderRequest),
        Cancel: schema(cancelRequest),
        Order: schema(orderView),
        Problem: schema(problemDetails),
      },
    },
    security: [{ bearer: [] }],
    paths: {
      '/orders': {
        post: {
          summary: 'Create an order and start its saga',
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: true,
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
            '201': orderResponse('Created (or, with Idempotent-Replayed: true, the first answer again)'),
            '400': problem('Malformed body, or a missing or malformed Idempotency-Key'),
            '401': problem('Missing or unknown API key'),
            '409': problem('The first request with this key is still in flight; retry after Retry-After'),
            '413': problem('Body too large'),
            '415': problem('Body is not JSON'),
            '422': problem('Key reused with a different body'),
            '503': problem('Temporal unavailable; retry with the same key'),
          },
        },
      },
      '/orders/{id}': {
        get: {
          summary: 'The order and its saga, live',
          parameters: [idParam],
          responses: { '200': orderResponse('The order'), '401': problem('Unauthorized'), '404': problem('No such order for this client') },
        },
      },
      '/orders/{id}/cancel': {
        post: {
          summary: 'Cancel the saga; honoured until the pivot (the shipment) starts',
          parameters: [idParam],
          requestBody: { required: false, content: { 'application/json': { schema: { $ref: '#/components/schemas/Cancel' } } } },
          responses: {
            '202': { description: 'Accepted: the saga is unwinding (or already cancelled)' },
            '404': problem('No such order for this client'),
            '409': problem('Refused: past the point of no return, or the order already ended'),
          },
        },
      },
      '/healthz': { get: { summary: 'The process is up', security: [], responses: { '200': { description: 'up' } } } },
      '/readyz': {
        get: { summary: 'The database and Temporal are reachable', security: [], responses: { '200': { description: 'ready' }, '503': { description: 'not ready' } } },
      },
    },
  };
}

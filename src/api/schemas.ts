import { z } from 'zod';
import { orderInputSchema, text } from '../orders/schema';
import { ORDER_STATUSES } from '../orders/list';
import { SAGA_STATUSES } from '../operator/sagas';

/** The body of POST /orders: an order without its ID, which the server assigns. */
export const createOrderRequest = orderInputSchema.omit({ orderId: true });
export type CreateOrderRequest = z.infer<typeof createOrderRequest>;

export const cancelRequest = z.object({ reason: text(500).optional() }).strict();

/** The body of POST /webhooks: where to send the client's order events. */
export const webhookRequest = z.object({ url: text(2048).describe('http(s) URL; loopback and private addresses are refused in production') }).strict();

export const webhookEndpoint = z.object({
  id: z.string(),
  url: z.string(),
  status: z.enum(['enabled', 'disabled']),
  disabledReason: z.string().nullable(),
  createdAt: z.string(),
});

export const webhookEndpointCreated = webhookEndpoint.extend({
  secret: z.string().describe('whsec_…: the signing secret, shown this once (Standard Webhooks)'),
});

export const webhookDeliveries = z.object({
  deliveries: z.array(
    z.object({
      id: z.string().describe('the webhook-id header of every attempt'),
      eventId: z.string(),
      type: z.string(),
      orderId: z.string(),
      state: z.enum(['pending', 'delivered', 'failed']),
      attempts: z.array(
        z.object({ attempt: z.number().int(), at: z.string(), status: z.number().int().nullable(), error: z.string().nullable(), durationMs: z.number().int() }),
      ),
      nextAttemptAt: z.string().nullable(),
    }),
  ),
});

const sagaView = z.object({
  workflowId: z.string(),
  status: z.string().describe('running, completed, compensated, cancelled, or the workflow status'),
  currentStep: z.string().nullable().optional(),
  completedSteps: z.array(z.string()).optional(),
  compensations: z.array(z.object({ step: z.string(), status: z.string(), attempts: z.number().int() })).optional(),
  failure: z.object({ type: z.string(), message: z.string() }).optional(),
});

export const orderView = z.object({
  id: z.string(),
  status: z.enum(ORDER_STATUSES),
  customerId: z.string(),
  items: z.array(z.object({ sku: z.string(), quantity: z.number().int() })),
  amount: z.object({ amountMinor: z.number().int(), currency: z.string() }),
  failureReason: z.string().nullable(),
  createdAt: z.string(),
  saga: sagaView,
});
export type OrderView = z.infer<typeof orderView>;

/** One order in a list: the row as GET /orders/{id} shows it, without the saga's live state (that is one call to Temporal per order; GET /orders/{id} has it). */
export const orderSummary = orderView.omit({ saga: true }).extend({ workflowId: z.string().describe('the saga: order-<id>') });
export type OrderSummary = z.infer<typeof orderSummary>;

export const LIST_LIMIT_DEFAULT = 20;
export const LIST_LIMIT_MAX = 100;

const isoInstant = z.iso
  .datetime({ offset: true })
  .describe('ISO 8601 date-time with Z or an offset (send "+" as %2B)');

/** A page of a list: how many (1 to LIST_LIMIT_MAX) and where the last page ended (its `next_cursor`). */
const pageParams = {
  limit: z
    .string()
    .regex(/^\d{1,3}$/, `an integer from 1 to ${LIST_LIMIT_MAX}`)
    .transform(Number)
    .pipe(z.number().int().min(1).max(LIST_LIMIT_MAX))
    .optional(),
  cursor: z.string().min(1).max(400).optional(),
};

/** GET /orders' query: every parameter at most once, none unknown (a misspelt filter is an error, not a wider list). */
export const listOrdersQuery = z
  .object({
    status: orderView.shape.status.optional(),
    created_after: isoInstant.optional().describe('orders created strictly after this instant'),
    created_before: isoInstant.optional().describe('orders created strictly before this instant'),
    ...pageParams,
  })
  .strict();

export const orderList = z.object({
  orders: z.array(orderSummary).describe('newest first (created_at, then ID, descending)'),
  next_cursor: z.string().nullable().describe('pass as `cursor` with the same filters for the next page; null on the last page'),
});
export type OrderList = z.infer<typeof orderList>;

export const problemDetails = z.object({
  type: z.string().describe('stable URI: urn:sagaflow:problem:<name>'),
  title: z.string(),
  status: z.number().int(),
  detail: z.string().optional(),
  instance: z.string().optional(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});

export const WAIT_MAX_MS = 30_000;

// The admin API (/admin/sagas): admin-scope keys only. The same actions as `sagaflow sagas`.

const durationText = z.string().regex(/^\d{1,6}(s|m|h|d)$/, 'a whole number and s, m, h or d (15m, 2h)');

/** The filters of `sagas list`, as query parameters and as a bulk action's `filters`. */
const adminSagaFilters = {
  status: orderView.shape.status.optional().describe("the order's status (PostgreSQL)"),
  saga_status: z.enum(SAGA_STATUSES).optional().describe("the saga's status (Temporal visibility)"),
  step: text(100).optional().describe('the step in flight (the open sagas, live)'),
  older_than: durationText.optional().describe('orders created at least this long ago'),
  client: text(64).optional().describe("an API client's name or ID"),
};

export const adminSagaListQuery = z
  .object({
    ...adminSagaFilters,
    ...pageParams,
  })
  .strict();

export const adminSagaSummary = z.object({
  orderId: z.string(),
  workflowId: z.string(),
  orderStatus: z.enum(ORDER_STATUSES),
  sagaStatus: z.string().describe(`one of ${SAGA_STATUSES.join(', ')}`),
  createdAt: z.string(),
  ageMs: z.number().int(),
  client: z.object({ id: z.string(), name: z.string().nullable() }).nullable(),
  currentStep: z.string().nullable(),
});

export const adminSagaList = z.object({
  sagas: z.array(adminSagaSummary).describe('newest order first'),
  next_cursor: z.string().nullable().describe('pass as `cursor` with the same filters for the next page; null on the last page'),
});

export const adminSagaDetail = z
  .object({
    order: z.object({ id: z.string(), status: z.enum(ORDER_STATUSES) }).passthrough(),
    workflowId: z.string(),
    temporalUi: z.string().nullable(),
    saga: z.object({ status: z.string() }).passthrough(),
    activities: z.array(z.object({ activity: z.string(), outcome: z.string(), attempts: z.number().int() }).passthrough()),
    ledger: z.array(z.object({ key: z.string(), state: z.string() }).passthrough()),
    references: z.object({}).passthrough(),
  })
  .passthrough()
  .describe('As `sagaflow sagas show ORDER_ID --json` prints it');

export const retryCompensationRequest = z.object({ note: text(2000).optional().describe('why, recorded with the action') }).strict();

export const resolveRequest = z.object({ note: text(2000).describe('what was done by hand, and where (a ticket): required') }).strict();

export const adminBulkRequest = z
  .object({
    query: text(2000).optional().describe("a Temporal visibility query, ANDed with WorkflowType IN ('orderSaga', 'orderSagaV2') AND ExecutionStatus = 'Running'"),
    filters: z.object(adminSagaFilters).strict().optional().describe('the filters of GET /admin/sagas'),
    dry_run: z.boolean().optional().describe('list what would be touched, touch nothing'),
    reason: text(500).optional(),
    limit: z.number().int().min(1).max(500).optional().describe('at most this many sagas (500)'),
    confirm: z.boolean().optional().describe('terminate only: required true, since a terminated saga runs no compensation'),
  })
  .strict();

export const retryCompensationResponse = z.object({
  orderId: z.string(),
  workflowId: z.string(),
  retried: z.array(z.string()).describe('the compensations that succeeded this time'),
  stillFailing: z.array(z.object({ step: z.string(), error: z.string() })),
});

export const resolveResponse = z.object({
  orderId: z.string(),
  workflowId: z.string(),
  steps: z.array(z.string()).describe('the compensations recorded as settled by hand'),
  via: z.enum(['saga', 'database']).describe('saga: the held saga recorded it and ends; database: written on the order of a closed saga'),
});

const selectedSaga = z.object({ orderId: z.string(), workflowId: z.string() });

export const adminBulkResponse = z.object({
  action: z.enum(['cancel', 'terminate']),
  dryRun: z.boolean(),
  selected: z.array(selectedSaga),
  more: z.boolean().describe('more sagas match than the limit: send it again'),
  results: z.array(
    selectedSaga.extend({ outcome: z.enum(['accepted', 'refused', 'terminated', 'failed']), reason: z.string().optional() }),
  ),
});

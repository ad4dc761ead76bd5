import { z } from 'zod';
import { orderInputSchema, text } from '../orders/schema';

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
  status: z.enum(['pending', 'completed', 'cancelled', 'failed']),
  customerId: z.string(),
  items: z.array(z.object({ sku: z.string(), quantity: z.number().int() })),
  amount: z.object({ amountMinor: z.number().int(), currency: z.string() }),
  failureReason: z.string().nullable(),
  createdAt: z.string(),
  saga: sagaView,
});
export type OrderView = z.infer<typeof orderView>;

export const problemDetails = z.object({
  type: z.string().describe('stable URI: urn:sagaflow:problem:<name>'),
  title: z.string(),
  status: z.number().int(),
  detail: z.string().optional(),
  instance: z.string().optional(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});

export const WAIT_MAX_MS = 30_000;

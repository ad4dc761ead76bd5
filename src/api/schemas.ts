import { z } from 'zod';
import { orderInputSchema, text } from '../orders/schema';

/** The body of POST /orders: an order without its ID, which the server assigns. */
export const createOrderRequest = orderInputSchema.omit({ orderId: true });
export type CreateOrderRequest = z.infer<typeof createOrderRequest>;

export const cancelRequest = z.object({ reason: text(500).optional() }).strict();

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

import { z } from 'zod';
import type { OrderInput } from '../../workflows/order/types';
import { hasControlCharacters, hasLoneSurrogate } from '@sagaflow/toolkit/ledger';

/** Currencies the payment provider settles; amounts are integer minor units. */
export const CURRENCIES = ['USD', 'EUR', 'GBP', 'CHF', 'CAD', 'AUD', 'JPY', 'SEK', 'NOK', 'DKK', 'PLN'] as const;

export const id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and -, at most 64');
/** Free text a person typed: stored exactly as sent, so what cannot be stored is refused (packages/toolkit/src/text.ts). */
export const text = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .refine((s) => !hasControlCharacters(s), 'must not contain control characters')
    .refine((s) => !hasLoneSurrogate(s), 'must be well-formed Unicode (no lone surrogates)');

export const orderInputSchema = z
  .object({
    orderId: id,
    customerId: id,
    items: z
      .array(z.object({ sku: id, quantity: z.number().int().min(1).max(1000) }).strict())
      .min(1)
      .max(50)
      .refine((items) => new Set(items.map((i) => i.sku)).size === items.length, 'each SKU at most once'),
    amount: z
      .object({
        amountMinor: z.number().int().positive().max(1_000_000_000_00),
        currency: z.enum(CURRENCIES),
      })
      .strict(),
    paymentToken: text(200),
    shippingAddress: z
      .object({
        name: text(200),
        line1: text(200),
        city: text(100),
        postalCode: text(20),
        country: z.string().regex(/^[A-Z]{2}$/, 'ISO 3166-1 alpha-2'),
      })
      .strict(),
  })
  .strict();

export class InvalidOrderError extends Error {
  constructor(readonly issues: { path: string; message: string }[]) {
    super(`invalid order: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
    this.name = 'InvalidOrderError';
  }
}

export function parseOrderInput(value: unknown): OrderInput {
  const parsed = orderInputSchema.safeParse(value);
  if (!parsed.success) {
    throw new InvalidOrderError(parsed.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })));
  }
  return parsed.data;
}

/**
 * Task queues. The saga workflow runs on the base queue; its activities run on
 * one queue per system, named after the base, so each pool scales, limits its
 * rate (a payment provider's rate limit) and fails on its own.
 */
export const ACTIVITY_SYSTEMS = ['orders', 'inventory', 'payments', 'shipping'] as const;
export type ActivitySystem = (typeof ACTIVITY_SYSTEMS)[number];
export type QueueRole = 'workflows' | ActivitySystem;
export const QUEUE_ROLES: readonly QueueRole[] = ['workflows', ...ACTIVITY_SYSTEMS];

export function queueName(base: string, role: QueueRole): string {
  return role === 'workflows' ? base : `${base}-${role}`;
}

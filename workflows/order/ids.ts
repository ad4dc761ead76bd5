/** The deterministic workflow ID: a retried request can never start a second saga for the order. */
export function orderWorkflowId(orderId: string): string {
  return `order-${orderId}`;
}

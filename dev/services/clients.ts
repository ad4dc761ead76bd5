// The dev services' fault controls, for the demo, the capture scenarios, the soak and the tests.

/** Arms a fault rule on the payment provider or the carrier (see FaultInjector in ./http). */
export async function addFault(serviceUrl: string, rule: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${serviceUrl}/__faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(rule),
  });
  if (!res.ok) throw new Error(`fault rule refused: ${res.status} ${await res.text()}`);
}

export async function clearFaults(serviceUrl: string): Promise<void> {
  await fetch(`${serviceUrl}/__faults`, { method: 'DELETE' });
}

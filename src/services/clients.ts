import { ApplicationFailure } from '@temporalio/common';
import { FailureType } from '../../workflows/failures';
import { inSpan, SpanKind, traceHeaders } from '../observability/tracing';

export interface HttpAnswer<T = unknown> {
  status: number;
  body: T;
  replayed: boolean;
}

/**
 * POSTs JSON with the step key as Idempotency-Key. Network errors, timeouts and
 * 5xx are transient (retryable); every other answer is returned to the caller.
 */
export async function postIdempotent<T>(
  url: string,
  idempotencyKey: string,
  body: unknown,
  timeoutMs: number,
  cancelled?: AbortSignal,
): Promise<HttpAnswer<T>> {
  return inSpan(
    `POST ${new URL(url).pathname}`,
    { 'http.request.method': 'POST', 'url.full': url, 'sagaflow.idempotency_key': idempotencyKey },
    async (span) => {
      const answer = await send<T>(url, idempotencyKey, body, timeoutMs, cancelled);
      span.setAttribute('http.response.status_code', answer.status);
      return answer;
    },
    SpanKind.CLIENT,
  );
}

async function send<T>(
  url: string,
  idempotencyKey: string,
  body: unknown,
  timeoutMs: number,
  cancelled?: AbortSignal,
): Promise<HttpAnswer<T>> {
  let res: Response;
  try {
    const timeout = AbortSignal.timeout(timeoutMs);
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey, ...traceHeaders() },
      body: JSON.stringify(body),
      signal: cancelled ? AbortSignal.any([timeout, cancelled]) : timeout,
    });
  } catch (err) {
    throw ApplicationFailure.retryable(
      `${url} unreachable: ${(err as Error).message}`,
      FailureType.ProviderUnavailable,
    );
  }
  const text = await res.text();
  if (res.status >= 500) {
    throw ApplicationFailure.retryable(`${url} answered ${res.status}`, FailureType.ProviderUnavailable);
  }
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    throw ApplicationFailure.retryable(`${url} sent a body that is not JSON`, FailureType.ProviderUnavailable);
  }
  return { status: res.status, body: parsed as T, replayed: res.headers.get('idempotent-replayed') === 'true' };
}

/** Answers that mean the same thing from both services. */
export function failOnIdempotencyAnswer(answer: HttpAnswer, key: string): void {
  const type = (answer.body as { error?: { type?: string } } | null)?.error?.type;
  if (answer.status === 409) {
    throw ApplicationFailure.nonRetryable(
      `key ${key} was cancelled at the service (${type ?? 'canceled'}); this late attempt applies nothing`,
      FailureType.StepCancelled,
    );
  }
  if (answer.status === 422) {
    throw ApplicationFailure.nonRetryable(`key ${key} reused with another request`, FailureType.IdempotencyConflict);
  }
  if (answer.status >= 400 && answer.status !== 402) {
    throw ApplicationFailure.nonRetryable(
      `service rejected ${key} with ${answer.status}: ${JSON.stringify(answer.body)}`,
      FailureType.InvalidInput,
    );
  }
}

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

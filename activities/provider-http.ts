import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { LedgerFailure } from '../src/ledger/ledger';
import { inSpan, SpanKind, traceHeaders } from '../src/observability/tracing';
import { FailureType } from '../workflows/order/failures';

export interface HttpAnswer<T = unknown> {
  status: number;
  body: T;
}

/**
 * POSTs JSON with the step key as Idempotency-Key. Network errors, timeouts and
 * 5xx are transient (retryable); every other answer is returned to the caller.
 */
async function postIdempotent<T>(
  url: string,
  idempotencyKey: string,
  body: unknown,
  timeoutMs: number,
  cancelled?: AbortSignal,
): Promise<HttpAnswer<T>> {
  const attributes = { 'http.request.method': 'POST', 'url.full': url, 'sagaflow.idempotency_key': idempotencyKey };
  return inSpan(
    `POST ${new URL(url).pathname}`,
    attributes,
    async (span) => {
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
        // Cancelled by the saga (the activity's cancellation): say so, as the SDK's CancelledFailure.
        if (cancelled?.aborted) throw cancelled.reason ?? err;
        throw ApplicationFailure.retryable(`${url} unreachable: ${(err as Error).message}`, FailureType.ProviderUnavailable);
      }
      span.setAttribute('http.response.status_code', res.status);
      const text = await res.text();
      if (res.status >= 500) throw ApplicationFailure.retryable(`${url} answered ${res.status}`, FailureType.ProviderUnavailable);
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        throw ApplicationFailure.retryable(`${url} sent a body that is not JSON`, FailureType.ProviderUnavailable);
      }
      return { status: res.status, body: parsed as T };
    },
    SpanKind.CLIENT,
  );
}

/**
 * One idempotent call of an external step: POSTs with the step key, heartbeating
 * while it waits, and turns the answers every such service gives alike into
 * failures. Statuses in `pass` are returned for the caller to read.
 */
export async function callService<T>(
  url: string,
  key: string,
  body: unknown,
  opts: { timeoutMs: number; pass?: number[] },
): Promise<HttpAnswer<T>> {
  const answer = await withHeartbeat((signal) => postIdempotent<T>(url, key, body, opts.timeoutMs, signal));
  failOnIdempotencyAnswer(answer, key, opts.pass ?? []);
  return answer;
}

/**
 * Heartbeats every second once `work` has run a second, so a worker that dies mid-call is
 * noticed within the heartbeat timeout and the attempt moves to another worker.
 * Outside an activity (a script, a unit test) it just awaits the work.
 */
async function withHeartbeat<T>(work: (signal?: AbortSignal) => Promise<T>): Promise<T> {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return work();
  }
  // No heartbeat for a call that answers within the first second (nearly all of them): a
  // heartbeat is a round trip to the server that delays the completion behind it. The
  // heartbeat timeout counts from the start, so a worker that dies at once is still noticed.
  const timer = setInterval(() => ctx.heartbeat(), 1000);
  try {
    return await work(ctx.cancellationSignal);
  } finally {
    clearInterval(timer);
  }
}

/** Answers that mean the same thing from every service that takes an Idempotency-Key. */
function failOnIdempotencyAnswer(answer: HttpAnswer, key: string, pass: number[]): void {
  if (pass.includes(answer.status)) return;
  if (answer.status === 409) {
    // The service is still handling an earlier request with this key (a retry overtook it): ask again later.
    throw ApplicationFailure.retryable(`key ${key} is in use by a request still in progress`, FailureType.ProviderUnavailable);
  }
  if (answer.status === 422) {
    throw ApplicationFailure.nonRetryable(`key ${key} reused with another request`, LedgerFailure.IdempotencyConflict);
  }
  if (answer.status >= 400) {
    throw ApplicationFailure.nonRetryable(
      `service rejected ${key} with ${answer.status}: ${JSON.stringify(answer.body)}`,
      FailureType.InvalidInput,
    );
  }
}


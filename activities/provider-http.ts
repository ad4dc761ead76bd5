import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { LedgerFailure } from '@sagaflow/toolkit/ledger';
import { inSpan, SpanKind, traceHeaders } from '../src/observability/tracing';
import { FailureType } from '../workflows/order/failures';
import { parseStepKey } from '@sagaflow/toolkit/workflow';

export interface HttpAnswer<T = unknown> {
  status: number;
  body: T;
}

/**
 * Whom a call is for, as its failures name it: the service ("carrier") and the step the key
 * belongs to ("create-shipment", "charge-payment undo"). A failure's message reaches the
 * order's failure reason and API clients, so it never carries the URL, host or port; those go
 * in the failure's details (the Temporal UI and the worker's log show them to operators).
 */
interface Callee {
  service: string;
  step: string;
}

/** The step a key names, `<step>` or `<step> undo`; the key itself if it is not a step key. */
function stepOf(key: string): string {
  try {
    const k = parseStepKey(key);
    return k.undo ? `${k.step} undo` : k.step;
  } catch {
    return key;
  }
}

/** What went wrong on the way, by code only (ECONNREFUSED, ENOTFOUND, ...): messages name hosts and ports. */
function networkCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; cause?: unknown } | undefined;
  const cause = e?.cause as { code?: unknown; errors?: { code?: unknown }[] } | undefined;
  const code = cause?.code ?? cause?.errors?.[0]?.code ?? e?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) ? code : 'connection failed';
}

/** The error with its causes, for operators (a failure's details). */
function explain(err: unknown): string {
  const parts: string[] = [];
  for (let e = err as { message?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.message === 'string' && e.message) parts.push(e.message);
  }
  return parts.join(': ') || String(err);
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
  callee: Callee,
  cancelled?: AbortSignal,
): Promise<HttpAnswer<T>> {
  const attributes = { 'http.request.method': 'POST', 'url.full': url, 'sagaflow.idempotency_key': idempotencyKey };
  const { service, step } = callee;
  return inSpan(
    `POST ${new URL(url).pathname}`,
    attributes,
    async (span) => {
      let res: Response;
      const timeout = AbortSignal.timeout(timeoutMs);
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey, ...traceHeaders() },
          body: JSON.stringify(body),
          signal: cancelled ? AbortSignal.any([timeout, cancelled]) : timeout,
        });
      } catch (err) {
        // Cancelled by the saga (the activity's cancellation): say so, as the SDK's CancelledFailure.
        if (cancelled?.aborted) throw cancelled.reason ?? err;
        const message = timeout.aborted
          ? `${service} did not answer ${step} within ${timeoutMs} ms`
          : `${service} unreachable for ${step} (${networkCode(err)})`;
        throw ApplicationFailure.retryable(message, FailureType.ProviderUnavailable, { url, error: explain(err) });
      }
      span.setAttribute('http.response.status_code', res.status);
      let text: string;
      try {
        text = await res.text();
      } catch (err) {
        // The answer broke off (the connection lost, the timeout reached mid-body): as transient as no answer.
        if (cancelled?.aborted) throw cancelled.reason ?? err;
        const message = timeout.aborted
          ? `${service} did not answer ${step} within ${timeoutMs} ms`
          : `${service} answer to ${step} broke off (${networkCode(err)})`;
        throw ApplicationFailure.retryable(message, FailureType.ProviderUnavailable, { url, status: res.status, error: explain(err) });
      }
      if (res.status >= 500) {
        throw ApplicationFailure.retryable(`${service} answered ${res.status} to ${step}`, FailureType.ProviderUnavailable, { url, status: res.status, body: text.slice(0, 2000) });
      }
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        throw ApplicationFailure.retryable(`${service} answered ${step} with a body that is not JSON`, FailureType.ProviderUnavailable, {
          url,
          status: res.status,
          body: text.slice(0, 2000),
        });
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
  opts: { timeoutMs: number; pass?: number[]; /** The service as failures name it ("carrier"). */ service: string },
): Promise<HttpAnswer<T>> {
  const callee = { service: opts.service, step: stepOf(key) };
  const answer = await withHeartbeat((signal) => postIdempotent<T>(url, key, body, opts.timeoutMs, callee, signal));
  failOnIdempotencyAnswer(answer, key, callee, url, opts.pass ?? []);
  return answer;
}

/**
 * Heartbeats every second once `work` (a provider call, or a wait for a rate limiter's turn) has
 * run a second, so a worker that dies mid-call is noticed within the heartbeat timeout and the
 * attempt moves to another worker. Outside an activity (a script, a unit test) it just awaits the work.
 */
export async function withHeartbeat<T>(work: (signal?: AbortSignal) => Promise<T>): Promise<T> {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return work();
  }
  // A local activity has no heartbeat: its workflow task's timeout notices a worker that died.
  if (ctx.info.isLocal) return work(ctx.cancellationSignal);
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
function failOnIdempotencyAnswer(answer: HttpAnswer, key: string, { service, step }: Callee, url: string, pass: number[]): void {
  if (pass.includes(answer.status)) return;
  if (answer.status === 409) {
    // The service is still handling an earlier request with this key (a retry overtook it): ask again later.
    throw ApplicationFailure.retryable(`${service} is still handling ${step} under key ${key}`, FailureType.ProviderUnavailable, { url });
  }
  if (answer.status === 422) {
    throw ApplicationFailure.nonRetryable(`key ${key} reused with another request`, LedgerFailure.IdempotencyConflict, { url, body: answer.body });
  }
  if (answer.status >= 400) {
    // The service's own words stay in the details: they are another system's text, not ours to show clients.
    throw ApplicationFailure.nonRetryable(`${service} refused ${step} with ${answer.status}`, FailureType.InvalidInput, { url, body: answer.body });
  }
}

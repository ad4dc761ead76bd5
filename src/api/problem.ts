/**
 * Errors as RFC 9457 problem details. The `type` URIs are stable: clients may
 * branch on them. The table is the single list of every problem the API sends.
 */
export const problems = {
  'invalid-request': { status: 400, title: 'The request is malformed or fails validation' },
  'idempotency-key-missing': { status: 400, title: 'An Idempotency-Key header is required' },
  'idempotency-key-invalid': { status: 400, title: 'The Idempotency-Key header is malformed' },
  unauthorized: { status: 401, title: 'A valid bearer API key is required' },
  forbidden: { status: 403, title: "This API key's scope does not reach this route" },
  'not-found': { status: 404, title: 'No such resource' },
  'method-not-allowed': { status: 405, title: 'The method is not allowed on this resource' },
  'request-in-flight': { status: 409, title: 'A request with this Idempotency-Key is still being processed' },
  'cancel-refused': { status: 409, title: 'The saga can no longer be cancelled' },
  'action-refused': { status: 409, title: 'The saga cannot take this operator action now' },
  'payload-too-large': { status: 413, title: 'The request body is too large' },
  'unsupported-media-type': { status: 415, title: 'The body must be application/json' },
  'idempotency-key-reused': {
    status: 422,
    title: 'This Idempotency-Key was already used with a different request body',
  },
  'rate-limited': { status: 429, title: 'Too many requests from this API client; retry after Retry-After seconds' },
  'authentication-throttled': {
    status: 429,
    title: 'Too many failed authentications from this address; retry after Retry-After seconds',
  },
  'webhooks-not-configured': { status: 501, title: 'Webhooks are not configured on this server' },
  unavailable: { status: 503, title: 'A dependency is unavailable; retry with the same Idempotency-Key' },
  internal: { status: 500, title: 'Internal error' },
} as const;

export type ProblemName = keyof typeof problems;

export const problemTypeUri = (name: ProblemName) => `urn:sagaflow:problem:${name}`;

export class Problem extends Error {
  constructor(
    readonly kind: ProblemName,
    readonly detail?: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail ?? problems[kind].title);
    this.name = 'Problem';
  }

  get status(): number {
    return problems[this.kind].status;
  }

  body(instance?: string): Record<string, unknown> {
    return {
      type: problemTypeUri(this.kind),
      title: problems[this.kind].title,
      status: this.status,
      ...(this.detail ? { detail: this.detail } : {}),
      ...(instance ? { instance } : {}),
      ...this.extra,
    };
  }
}

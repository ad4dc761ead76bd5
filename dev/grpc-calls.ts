import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';

/** Calls a gRPC connection has open, by method, as a counting interceptor sees them. */
export interface CallCounter {
  /** Add to a Connection's interceptors (after the retry interceptor: each attempt is one call). */
  interceptor: Interceptor;
  /** Calls of `method` (e.g. `GetWorkflowExecutionHistory`) started and not yet ended. */
  open(method: string): number;
  /** The most calls of `method` open at once since the counter was made. */
  peak(method: string): number;
  /** Calls of `method` started since the counter was made. */
  started(method: string): number;
}

/**
 * Counts a connection's calls from their start to their status, whatever ends them (an answer,
 * an error, a deadline, a cancel): what a long poll nobody waits for any more looks like from
 * the client side, without reaching into the SDK.
 */
export function callCounter(): CallCounter {
  const open = new Map<string, number>();
  const peak = new Map<string, number>();
  const started = new Map<string, number>();
  const interceptor: Interceptor = (options, nextCall) => {
    const method = options.method_definition.path.split('/').pop() ?? '?';
    return new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        const now = (open.get(method) ?? 0) + 1;
        open.set(method, now);
        peak.set(method, Math.max(peak.get(method) ?? 0, now));
        started.set(method, (started.get(method) ?? 0) + 1);
        let ended = false;
        next(metadata, {
          onReceiveStatus(status, nextStatus) {
            if (!ended) {
              ended = true;
              open.set(method, (open.get(method) ?? 1) - 1);
            }
            nextStatus(status);
          },
        });
      },
    });
  };
  return {
    interceptor,
    open: (m) => open.get(m) ?? 0,
    peak: (m) => peak.get(m) ?? 0,
    started: (m) => started.get(m) ?? 0,
  };
}

import { context, propagation, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OpenTelemetryPlugin } from '@temporalio/interceptors-opentelemetry';

export interface Tracing {
  /** Give it to the Temporal Client and Worker: spans and context cross workflow and activity boundaries. */
  plugin: OpenTelemetryPlugin;
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * OpenTelemetry tracing from the API through the workflow and its activities to
 * the provider calls. Off (undefined, and every span a no-op) unless an OTLP
 * endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT).
 */
export function startTracing(opts: { endpoint?: string; serviceName: string }): Tracing | undefined {
  if (!opts.endpoint) return undefined;
  const resource = new Resource({ 'service.name': opts.serviceName });
  const processor = new BatchSpanProcessor(
    new OTLPTraceExporter({ url: `${opts.endpoint.replace(/\/$/, '')}/v1/traces` }),
    { scheduledDelayMillis: 500 },
  );
  const provider = new BasicTracerProvider({ resource, spanProcessors: [processor] });
  provider.register({ contextManager: new AsyncLocalStorageContextManager(), propagator: new W3CTraceContextPropagator() });
  return {
    plugin: new OpenTelemetryPlugin({ resource, spanProcessor: processor }),
    flush: () => provider.forceFlush(),
    async shutdown() {
      await provider.shutdown();
      // Unregister the globals, so a later start in this process begins clean.
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

const tracer = () => trace.getTracer('sagaflow');

/** Runs fn in a span; a thrown error marks the span failed. A no-op when tracing is off. */
export function inSpan<T>(
  name: string,
  attributes: Record<string, string | number>,
  fn: (span: Span) => Promise<T>,
  kind: SpanKind = SpanKind.INTERNAL,
): Promise<T> {
  return tracer().startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** W3C trace headers for an outgoing request, so the callee can join the trace. */
export function traceHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  propagation.inject(context.active(), headers);
  return headers;
}

export { SpanKind };

import type { LogLevel, LogMetadata, Logger } from '@temporalio/common';
import pino, { type DestinationStream, type Logger as Pino } from 'pino';
import pretty from 'pino-pretty';

/**
 * Every process logs JSON lines through pino: `ts` (ISO time), `level` (a
 * word), `service`, `msg`, and the saga's identifiers where there is a saga
 * (workflowId, orderId, step, idempotencyKey). Temporal's own log calls (the
 * SDK's and, forwarded, Core's) come through the same logger. Quiet by default:
 * LOG_LEVEL=info shows what an operator acts on; the SDK's life-cycle chatter is
 * debug.
 */
export type AppLogger = Pino;
export type AppLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * A process's logger. `format` (LOG_FORMAT; `json` by default) `pretty` writes the same lines for a
 * person at a terminal, through pino-pretty: time, level, service, message, then the fields.
 */
export function createLogger(opts: { service: string; level?: string; destination?: DestinationStream; format?: string }): AppLogger {
  const format = opts.format ?? process.env.LOG_FORMAT ?? 'json';
  if (format !== 'json' && format !== 'pretty') throw new RangeError(`LOG_FORMAT: json or pretty, not "${format}"`);
  const destination =
    format === 'pretty'
      ? pretty({
          destination: opts.destination ?? 1,
          sync: true,
          colorize: opts.destination === undefined && process.stdout.isTTY === true,
          messageKey: 'msg',
          timestampKey: 'ts',
          translateTime: 'SYS:HH:MM:ss.l',
          ignore: 'pid,hostname,service',
          messageFormat: '{service}: {msg}',
          hideObject: false,
        })
      : (opts.destination ?? pino.destination({ sync: true }));
  return pino(
    {
      level: opts.level ?? 'info',
      base: { service: opts.service },
      messageKey: 'msg',
      timestamp: () => `,"ts":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err, error: errorSerializer },
    },
    destination,
  );
}

function errorSerializer(value: unknown): unknown {
  return value instanceof Error ? { name: value.name, message: value.message } : value;
}

/**
 * A `(line) => void` sink for code that logs plain objects (the API, the jobs):
 * `level` in the line picks the level (info if absent).
 */
export function lineLogger(logger: AppLogger): (line: Record<string, unknown>) => void {
  return ({ level, ...rest }) => {
    const l = (typeof level === 'string' && ['debug', 'info', 'warn', 'error'].includes(level) ? level : 'info') as AppLevel;
    logger[l](rest);
  };
}

/** SDK messages that are routine life cycle, not news: logged at debug. */
const ROUTINE = [
  /^Worker state changed$/,
  /^No (workflows|activities|Nexus services) registered, not polling for/,
  /^asset workflow-bundle/, // webpack's build stats
  // Said again, with the step, its key and the failure's type, by the step observer (workers/observability.ts).
  /^Activity failed$/,
];

/** Keys Temporal adds that say nothing to a reader: the task token is ~150 characters of base64. */
const DROPPED = new Set(['taskToken', 'sdkComponent']);

/** Temporal's Logger on top of pino, for Runtime.install({ logger }). */
export class TemporalLogger implements Logger {
  constructor(private readonly logger: AppLogger) {}

  log(level: LogLevel, message: string, meta: LogMetadata = {}): void {
    const fields: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(meta)) if (!DROPPED.has(k)) fields[k] = typeof v === 'bigint' ? v.toString() : v;
    const routine = ROUTINE.some((r) => r.test(message));
    const lvl: AppLevel = routine ? 'debug' : level === 'TRACE' ? 'debug' : (level.toLowerCase() as AppLevel);
    if (meta.sdkComponent === 'core' || (typeof meta.target === 'string' && meta.target.startsWith('temporal'))) fields.component = 'temporal-core';
    this.logger[lvl](fields, message);
  }
  trace(m: string, meta?: LogMetadata) {
    this.log('TRACE', m, meta);
  }
  debug(m: string, meta?: LogMetadata) {
    this.log('DEBUG', m, meta);
  }
  info(m: string, meta?: LogMetadata) {
    this.log('INFO', m, meta);
  }
  warn(m: string, meta?: LogMetadata) {
    this.log('WARN', m, meta);
  }
  error(m: string, meta?: LogMetadata) {
    this.log('ERROR', m, meta);
  }
}

export const toTemporalLevel = (level: string): LogLevel =>
  (({ debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR' }) as Record<string, LogLevel>)[level] ?? 'INFO';

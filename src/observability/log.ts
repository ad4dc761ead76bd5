import type { LogLevel, LogMetadata, Logger } from '@temporalio/common';

const ORDER: Record<string, number> = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4 };

/**
 * One JSON object per line. Temporal's own log calls arrive here with their
 * metadata (workflowId, activityType, taskQueue...), so a line about a step
 * carries the workflow ID and the step alongside the idempotency key we add.
 */
export class JsonLogger implements Logger {
  constructor(
    private readonly level: LogLevel = 'INFO',
    private readonly write: (line: string) => void = (l) => process.stdout.write(l),
  ) {}

  log(level: LogLevel, message: string, meta: LogMetadata = {}): void {
    if ((ORDER[level] ?? 2) < (ORDER[this.level] ?? 2)) return;
    this.write(`${JSON.stringify({ ts: new Date().toISOString(), level: level.toLowerCase(), msg: message, ...meta }, replacer)}\n`);
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

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export const toTemporalLevel = (level: string): LogLevel =>
  (({ debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR' }) as Record<string, LogLevel>)[level] ?? 'INFO';

/**
 * sagaflow/ledger: makes a saga's activities take effect exactly once.
 *
 * ```ts
 * const ledger = createLedger(pool, { onReplay: (step) => dedupeHits.inc({ step }) });
 * const charge = ledger.step('charge');
 * await charge.local(input.key, input, async (tx) => { ... });          // effect + record, one transaction
 * await charge.localUndo(undoKey, input, async (tx, { forward }) => { ... });
 * ```
 *
 * Run migrateLedger(pool) once (or at every start: it is idempotent) to create
 * its tables in your database: step_ledger, and ledger_rate_limits for
 * createRateLimiter (a token bucket per name, shared by every process on the
 * database: `await limiter.acquire(signal)` before each request to a service).
 */
export {
  createLedger,
  forwardEffect,
  holdsAnswer,
  LedgerFailure,
  type CallOutcome,
  type ExternalStep,
  type ExternalUndo,
  type ForwardOutcome,
  type Ledger,
  type LedgerEntry,
  type LedgerHooks,
  type PlannedStatement,
  type RecordedFailure,
  type StepLedger,
  type StepState,
  type UndoContext,
} from './ledger';
export { LEDGER_DDL, LEDGER_SCHEMA, migrateLedger } from './schema';
export { purgeLedger, type LedgerRetention } from './retention';
export { createRateLimiter, DEFAULT_RATE_LIMIT_MAX_WAIT_MS, type RateLimiter, type RateLimiterOptions } from './rate-limit';
export { canonicalJson, fingerprint, UnrepresentableValueError } from './fingerprint';
export { commitWith, inTransaction, isConnectionError, isPermanentDataError, quoteIdent, withClient, type Db, type Statement, type Tx } from '../db';
export { hasControlCharacters, hasLoneSurrogate, storableText } from '../text';
export { applySchema, migrateSchema, schemaSql, SCHEMA_VERSIONS_TABLE, type ModuleSchema, type SchemaMigration } from '../schema-versions';

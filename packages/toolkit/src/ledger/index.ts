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
 * its one table in your database.
 */
export {
  createLedger,
  forwardEffect,
  LedgerFailure,
  type CallOutcome,
  type ExternalStep,
  type ExternalUndo,
  type ForwardOutcome,
  type Ledger,
  type LedgerEntry,
  type LedgerHooks,
  type RecordedFailure,
  type StepLedger,
  type StepState,
  type UndoContext,
} from './ledger';
export { LEDGER_DDL, LEDGER_SCHEMA, migrateLedger } from './schema';
export { purgeLedger, type LedgerRetention } from './retention';
export { canonicalJson, fingerprint, UnrepresentableValueError } from './fingerprint';
export { inTransaction, isConnectionError, isPermanentDataError, quoteIdent, withClient, type Db, type Tx } from '../db';
export { hasControlCharacters, hasLoneSurrogate, storableText } from '../text';
export { applySchema, migrateSchema, schemaSql, SCHEMA_VERSIONS_TABLE, type ModuleSchema, type SchemaMigration } from '../schema-versions';

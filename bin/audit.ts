import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, UsageError } from '../src/config';
import { createPool, isConnectionError, quoteIdent } from '../src/db/pool';
import { auditBooks, auditSummary, type AuditReport } from '../src/orders/audit';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run audit -- [--settled] [--schema NAME] [--json]

Checks sagaflow's own books in the database at DATABASE_URL (orders, local
payments and shipments, stock, fraud checks, the step ledger) and prints one
line per violation, then a summary; exits 1 if any, 3 if the books could not be
read (no database, or one \`sagaflow migrate\` has not built).
--settled: nothing is in flight, so anything pending is a violation too.
--schema: the schema to check (public). --json: the report as JSON.`;

/** Exit code when the audit could not read the books, apart from 1 (violations found). */
const CANNOT_AUDIT = 3;

runMain(USAGE, async () => {
  let values: { settled?: boolean; schema?: string; json?: boolean };
  try {
    ({ values } = parseArgs({
      options: { settled: { type: 'boolean' }, schema: { type: 'string' }, json: { type: 'boolean' } },
    }));
    if (values.schema !== undefined) quoteIdent(values.schema);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const config = loadConfig();
  if (!config.DATABASE_URL) {
    throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required: the database whose books to audit' }]);
  }
  const schema = values.schema ?? 'public';
  const db = createPool({ connectionString: config.DATABASE_URL, schema: values.schema, max: 1 });
  let report: AuditReport;
  try {
    report = await auditBooks(db, { settled: values.settled === true });
  } catch (err) {
    process.stderr.write(`audit: ${cannotAudit(err, schema)}\n`);
    return CANNOT_AUDIT;
  } finally {
    await db.end().catch(() => undefined);
  }
  if (values.json) {
    console.log(JSON.stringify({ settled: values.settled === true, ...report }, null, 2));
  } else {
    for (const v of report.violations) console.log(v);
    console.log(auditSummary(report));
  }
  return report.violations.length === 0 ? 0 : 1;
});

/** One line saying why the books could not be read: a database error is the operator's to fix, not a stack to read. */
function cannotAudit(err: unknown, schema: string): string {
  const e = err as { message?: string; code?: unknown };
  const message = e?.message ?? String(err);
  if (isConnectionError(err)) return `cannot reach the database: ${message}`;
  // undefined_table, undefined_column, undefined_function: a schema sagaflow's migrations did not build (or not yet).
  if (e?.code === '42P01' || e?.code === '42703' || e?.code === '42883') {
    return `cannot read the books in schema "${schema}": ${message} (has \`sagaflow migrate\` run on this database?)`;
  }
  return `cannot read the books in schema "${schema}": ${message}${typeof e?.code === 'string' ? ` (SQLSTATE ${e.code})` : ''}`;
}

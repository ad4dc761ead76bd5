import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, UsageError } from '../src/config';
import { createPool, quoteIdent } from '../src/db/pool';
import { auditBooks, auditSummary, type AuditReport } from '../src/orders/audit';
import { runMain } from './run';

const USAGE = `usage: npm run audit -- [--settled] [--schema NAME] [--json]

Checks the books of the database at DATABASE_URL (money, labels, stock, the step
ledger) and prints one line per violation, then a summary; exits 1 if any.
--settled: nothing is in flight, so anything pending is a violation too.
--schema: the schema to check (public). --json: the report as JSON.`;

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
  const db = createPool({ connectionString: config.DATABASE_URL, schema: values.schema, max: 1 });
  let report: AuditReport;
  try {
    report = await auditBooks(db, { settled: values.settled === true });
  } finally {
    await db.end();
  }
  if (values.json) {
    console.log(JSON.stringify({ settled: values.settled === true, ...report }, null, 2));
  } else {
    for (const v of report.violations) console.log(v);
    console.log(auditSummary(report));
  }
  return report.violations.length === 0 ? 0 : 1;
});

import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../src/config';
import { createPool, quoteIdent } from '../src/db/pool';
import { auditBooks, auditSummary, type AuditReport } from '../src/orders/audit';
import { runMain } from './run';

/**
 * `npm run audit -- [--settled] [--schema <name>] [--json]`: checks the books of
 * the database at DATABASE_URL (money, labels, stock, the step ledger) and
 * prints one line per violation, then a summary. Exits 1 if any, 0 otherwise.
 * --settled: nothing is in flight any more, so a pending order, ledger row,
 * payment or shipment is a violation too.
 */
runMain(async () => {
  let values: { settled?: boolean; schema?: string; json?: boolean };
  try {
    ({ values } = parseArgs({
      options: { settled: { type: 'boolean' }, schema: { type: 'string' }, json: { type: 'boolean' } },
    }));
    if (values.schema !== undefined) quoteIdent(values.schema);
  } catch (err) {
    console.error(`${(err as Error).message}\nusage: npm run audit -- [--settled] [--schema <name>] [--json]`);
    return 2;
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

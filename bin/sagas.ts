import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { ConfigError, loadConfig, UsageError } from '../src/config';
import { createPool } from '../src/db/pool';
import { ORDER_STATUSES, MAX_PAGE, type OrderStatus } from '../src/orders/list';
import {
  cursorProblem,
  listSagas,
  OperatorError,
  parseDuration,
  SAGA_STATUSES,
  sagaDetailText,
  sagaLine,
  showSaga,
  type OperatorDeps,
} from '../src/operator/sagas';
import { clientConnectionOptions, temporalTargetOrExplain } from '../src/temporal-connect';
import { runMain } from '../src/run-main';
import { dataConverterOf, payloadCodecSetting } from '../src/codec/settings';

const USAGE = `usage: npm run sagas -- list [--status S] [--saga-status PHASE] [--step NAME] [--older-than 15m]
                            [--client NAME_OR_ID] [--limit N] [--cursor C] [--json]
       npm run sagas -- show ORDER_ID [--json]

Read-only views of the sagas, for operators: the orders in DATABASE_URL and the
workflows on the Temporal server at TEMPORAL_ADDRESS (TEMPORAL_NAMESPACE).

list: one line per saga, newest order first: order ID, workflow ID, order status,
  saga status, age, client, step in flight (tab-separated). The next page's
  --cursor is printed on stderr, with the same filters.
  From PostgreSQL: --status (${ORDER_STATUSES.join(', ')}), --older-than
  (created at least that long ago: 90s, 15m, 2h, 3d), --client, the pages.
  From Temporal visibility: --saga-status (${SAGA_STATUSES.join(', ')}).
  From the open sagas' status query, live: --step (the step in flight).
  With --saga-status or --step a page may come out short: follow the cursor.
  --limit: 1 to ${MAX_PAGE} (20).
show: the order row, the saga's status (steps, compensations with attempts and
  last errors), its activities from the history, its step ledger rows, the
  payment provider's and carrier's references, and its Temporal UI page
  (TEMPORAL_UI_URL). Exit 1 if there is no such order.
--json: the same as JSON, for scripts.`;

runMain(USAGE, async () => {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (command === 'show' && rest.length !== 1) throw new UsageError('show takes one ORDER_ID');
  if (command === 'list' && rest.length) throw new UsageError(`list takes no arguments, not "${rest.join(' ')}"`);
  if (command !== 'list' && command !== 'show') throw new UsageError(command === undefined ? 'list or show?' : `unknown command "${command}"`);
  const listOnly = ['status', 'saga-status', 'step', 'older-than', 'client', 'limit', 'cursor'] as const;
  const misplaced = command === 'show' ? listOnly.filter((f) => values[f] !== undefined) : [];
  if (misplaced.length) throw new UsageError(`show takes --json only, not --${misplaced.join(', --')}`);
  if (values.status !== undefined && !(ORDER_STATUSES as readonly string[]).includes(values.status)) {
    throw new UsageError(`--status: one of ${ORDER_STATUSES.join(', ')}, not "${values.status}"`);
  }
  if (values['saga-status'] !== undefined && !(SAGA_STATUSES as readonly string[]).includes(values['saga-status'])) {
    throw new UsageError(`--saga-status: one of ${SAGA_STATUSES.join(', ')}, not "${values['saga-status']}"`);
  }
  const limit = values.limit === undefined ? 20 : Number(values.limit);
  if (!/^\d{1,3}$/.test(values.limit ?? '20') || limit < 1 || limit > MAX_PAGE) throw new UsageError(`--limit: a whole number from 1 to ${MAX_PAGE}`);
  let olderThanMs: number | undefined;
  try {
    olderThanMs = values['older-than'] === undefined ? undefined : parseDuration(values['older-than']);
  } catch (err) {
    throw new UsageError(`--older-than: ${(err as Error).message}`);
  }

  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required: the database whose orders to read' }]);
  // Encrypted payloads (the status query's answer) are opened with the workers' keys.
  const dataConverter = dataConverterOf(payloadCodecSetting(config));
  const target = temporalTargetOrExplain(process.env);
  const db = createPool({ connectionString: config.DATABASE_URL, max: 4 });
  const connection = await Connection.connect(clientConnectionOptions(target.connectionOptions));
  const deps: OperatorDeps = {
    db,
    temporal: new Client({ connection, namespace: target.namespace, dataConverter }),
    namespace: target.namespace,
    temporalUiUrl: config.TEMPORAL_UI_URL,
  };
  try {
    if (command === 'show') {
      const detail = await showSaga(deps, rest[0]!);
      if (!detail) {
        process.stderr.write(`no order "${rest[0]}"\n`);
        return 1;
      }
      if (values.json) console.log(JSON.stringify(detail, null, 2));
      else for (const line of sagaDetailText(detail)) console.log(line);
      return 0;
    }
    const page = await listSagas(
      deps,
      {
        status: values.status as OrderStatus | undefined,
        sagaStatus: values['saga-status'],
        step: values.step,
        olderThanMs,
        client: values.client,
      },
      { cursor: values.cursor, limit },
    );
    if (values.json) console.log(JSON.stringify(page, null, 2));
    else {
      for (const s of page.sagas) console.log(sagaLine(s));
      if (page.nextCursor) process.stderr.write(`more: --cursor ${page.nextCursor}\n`);
    }
    return 0;
  } catch (err) {
    const mistake = cursorProblem(err) ?? (err instanceof OperatorError ? err : undefined);
    if (!mistake) throw err;
    process.stderr.write(`${mistake.message}\n`);
    return 1;
  } finally {
    await connection.close().catch(() => undefined);
    await db.end().catch(() => undefined);
  }
});

function parse() {
  return parseArgs({
    allowPositionals: true,
    options: {
      status: { type: 'string' },
      'saga-status': { type: 'string' },
      step: { type: 'string' },
      'older-than': { type: 'string' },
      client: { type: 'string' },
      limit: { type: 'string' },
      cursor: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
}

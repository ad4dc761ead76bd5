import os from 'node:os';
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
import { BULK_LIMIT_MAX, cancelSagas, resolve, retryCompensation, terminateSagas, type BulkResult, type SagaSelection } from '../src/operator/actions';
import { clientConnectionOptions, temporalTargetOrExplain } from '../src/temporal-connect';
import { runMain } from '../src/run-main';
import { dataConverterOf, payloadCodecSetting } from '../src/codec/settings';

const USAGE = `usage: npm run sagas -- list [--status S] [--saga-status PHASE] [--step NAME] [--older-than 15m]
                            [--client NAME_OR_ID] [--limit N] [--cursor C] [--json]
       npm run sagas -- show ORDER_ID [--json]
       npm run sagas -- retry-compensation ORDER_ID [--note TEXT] [--by NAME] [--json]
       npm run sagas -- resolve ORDER_ID --note TEXT [--by NAME] [--json]
       npm run sagas -- cancel SELECTION [--reason TEXT] [--limit N] [--dry-run] [--by NAME] [--json]
       npm run sagas -- terminate SELECTION --yes [--reason TEXT] [--limit N] [--dry-run] [--by NAME] [--json]

The sagas, for operators: the orders in DATABASE_URL and the workflows on the
Temporal server at TEMPORAL_ADDRESS (TEMPORAL_NAMESPACE).

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

Acting (each action is written to operator_actions, one row per saga, before and after):
retry-compensation: a saga held for an operator (a compensation failed for good)
  reruns its failed compensations, once the cause is fixed; prints which succeeded
  and which failed again. Refused for a saga not held, or closed (then: resolve).
resolve: records that the order's failed compensations were settled by hand (--note
  says what was done, and where: required). A held saga records it and ends; for a
  closed one (from before the hold, terminated) it is written on the order.
cancel: the selected open sagas get their own cancel: each accepts before its pivot
  (and unwinds) or refuses after it; one line per saga.
terminate: the selected open sagas are terminated. A terminated saga runs NO
  compensation: what its steps did stays done (a charge, held stock, a label).
  Needs --yes. After it, for each order: \`sagas show ORDER_ID\`, then undo by hand
  what it left (docs/runbook.md) and \`sagas resolve ORDER_ID --note ...\`.
SELECTION (cancel, terminate): --query Q, a Temporal visibility query (always ANDed
  with the open order sagas: WorkflowType IN ('orderSaga', 'orderSagaV2') AND ExecutionStatus =
  'Running'), e.g. "SagaStatus = 'running' AND StartTime < '2025-01-01T00:00:00Z'";
  and/or the filters of list (--status, --saga-status, --step, --older-than,
  --client). --limit: at most 1 to ${BULK_LIMIT_MAX} sagas (${BULK_LIMIT_MAX}); run it again for
  more. --dry-run lists what it would touch and touches nothing.
--by: who acts, recorded with the action (cli:<your user name>).
Exit 0 done; 1 refused or failed (one line on stderr; for cancel and terminate,
  any saga refused or failed); 2 a wrong flag.
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
  const COMMANDS = ['list', 'show', 'retry-compensation', 'resolve', 'cancel', 'terminate'];
  if (command === undefined || !COMMANDS.includes(command)) {
    throw new UsageError(command === undefined ? `${COMMANDS.join(', ')}?` : `unknown command "${command}"`);
  }
  const oneOrder = command === 'show' || command === 'retry-compensation' || command === 'resolve';
  const bulk = command === 'cancel' || command === 'terminate';
  if (oneOrder && rest.length !== 1) throw new UsageError(`${command} takes one ORDER_ID`);
  if (!oneOrder && rest.length) throw new UsageError(`${command} takes no arguments, not "${rest.join(' ')}"`);
  // The flags each command takes, beside --json.
  const takes: Record<string, readonly (keyof typeof values)[]> = {
    list: ['status', 'saga-status', 'step', 'older-than', 'client', 'limit', 'cursor'],
    show: [],
    'retry-compensation': ['note', 'by'],
    resolve: ['note', 'by'],
    cancel: ['query', 'status', 'saga-status', 'step', 'older-than', 'client', 'limit', 'reason', 'dry-run', 'by'],
    terminate: ['query', 'status', 'saga-status', 'step', 'older-than', 'client', 'limit', 'reason', 'dry-run', 'by', 'yes'],
  };
  const misplaced = (Object.keys(values) as (keyof typeof values)[]).filter((f) => f !== 'json' && values[f] !== undefined && !takes[command]!.includes(f));
  if (misplaced.length) throw new UsageError(`${command} does not take --${misplaced.join(', --')}`);
  if (command === 'resolve' && !values.note?.trim()) throw new UsageError('resolve needs --note: what was done by hand, and where (a ticket)');
  if (command === 'terminate' && !values.yes && !values['dry-run']) {
    throw new UsageError('terminate runs no compensation: what the sagas did stays done; confirm with --yes (or look first with --dry-run)');
  }
  const filterFlags = ['status', 'saga-status', 'step', 'older-than', 'client'] as const;
  if (bulk && values.query === undefined && !filterFlags.some((f) => values[f] !== undefined)) {
    throw new UsageError(`${command} needs a selection: --query, or the filters of list (--status, --saga-status, --step, --older-than, --client)`);
  }
  if (values.status !== undefined && !(ORDER_STATUSES as readonly string[]).includes(values.status)) {
    throw new UsageError(`--status: one of ${ORDER_STATUSES.join(', ')}, not "${values.status}"`);
  }
  if (values['saga-status'] !== undefined && !(SAGA_STATUSES as readonly string[]).includes(values['saga-status'])) {
    throw new UsageError(`--saga-status: one of ${SAGA_STATUSES.join(', ')}, not "${values['saga-status']}"`);
  }
  const maxLimit = bulk ? BULK_LIMIT_MAX : MAX_PAGE;
  const limit = values.limit === undefined ? (bulk ? BULK_LIMIT_MAX : 20) : Number(values.limit);
  if (!/^\d{1,3}$/.test(values.limit ?? '20') || limit < 1 || limit > maxLimit) throw new UsageError(`--limit: a whole number from 1 to ${maxLimit}`);
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
  const by = values.by ?? `cli:${userName()}`;
  const actionDeps = { client: deps.temporal, db };
  const out = (value: unknown, lines: () => string[]) => {
    if (values.json) console.log(JSON.stringify(value, null, 2));
    else for (const line of lines()) console.log(line);
  };
  try {
    if (command === 'retry-compensation') {
      const r = await retryCompensation({ ...actionDeps, orderId: rest[0]!, by, note: values.note });
      out(r, () => [
        `order ${r.orderId}: retried ${r.retried.join(', ') || '-'}`,
        ...r.stillFailing.map((f) => `  still failing: ${f.step}: ${f.error}`),
      ]);
      return r.stillFailing.length ? 1 : 0;
    }
    if (command === 'resolve') {
      const r = await resolve({ ...actionDeps, orderId: rest[0]!, by, note: values.note! });
      out(r, () => [`order ${r.orderId}: resolved by hand: ${r.steps.join(', ')}${r.via === 'saga' ? ' (recorded by the held saga, which ends)' : ''}`]);
      return 0;
    }
    if (bulk) {
      const selection: SagaSelection = {
        query: values.query,
        filters: {
          status: values.status as OrderStatus | undefined,
          sagaStatus: values['saga-status'],
          step: values.step,
          olderThanMs,
          client: values.client,
        },
      };
      const request = { ...actionDeps, namespace: target.namespace, by, selection, dryRun: values['dry-run'] ?? false, limit, reason: values.reason };
      const r = command === 'cancel' ? await cancelSagas(request) : await terminateSagas({ ...request, confirm: values.yes ?? false });
      out(r, () => bulkLines(r));
      return r.results.every((x) => x.outcome === 'accepted' || x.outcome === 'terminated') ? 0 : 1;
    }
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

/** What a bulk action did, a line per saga: order, workflow, outcome, reason. */
function bulkLines(r: BulkResult): string[] {
  const lines = r.dryRun
    ? r.selected.map((s) => [s.orderId, s.workflowId, `would ${r.action}`].join('\t'))
    : r.results.map((x) => [x.orderId, x.workflowId, x.outcome, x.reason ?? ''].join('\t').trimEnd());
  const done = r.dryRun ? `dry run: ${r.selected.length} saga(s) would be ${r.action === 'cancel' ? 'cancelled' : 'terminated'}; nothing touched` : `${r.results.length} saga(s)`;
  process.stderr.write(`${done}${r.more ? `; more match than --limit: run it again` : ''}\n`);
  if (!r.dryRun && r.action === 'terminate' && r.results.some((x) => x.outcome === 'terminated')) {
    process.stderr.write('terminated sagas ran no compensation: for each, `sagas show ORDER_ID`, undo by hand what it left, then `sagas resolve ORDER_ID --note ...`\n');
  }
  return lines;
}

function userName(): string {
  try {
    return os.userInfo().username || 'unknown';
  } catch {
    return process.env.USER || 'unknown';
  }
}

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
      note: { type: 'string' },
      by: { type: 'string' },
      query: { type: 'string' },
      reason: { type: 'string' },
      'dry-run': { type: 'boolean' },
      yes: { type: 'boolean' },
    },
  });
}

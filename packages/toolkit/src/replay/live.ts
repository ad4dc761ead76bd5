import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { replayAll, type ReplayCase, type ReplayOptions, type ReplayOutcome } from './replay';

/**
 * Replays recent histories from a running server against a build: the check a
 * team runs before deploying new workers. Encrypted histories are opened with
 * the client's own data converter unless options give another.
 */
export async function replayFromServer(
  client: Client,
  query: string,
  options: ReplayOptions & { limit?: number },
): Promise<ReplayOutcome[]> {
  const limit = options.limit ?? 100;
  const cases: ReplayCase[] = [];
  for await (const { workflowId, history } of client.workflow.list({ query, pageSize: Math.min(limit, 100) }).intoHistories()) {
    cases.push({ workflowId, scenario: workflowId, history: history as temporal.api.history.v1.IHistory });
    if (cases.length >= limit) break;
  }
  if (cases.length === 0) return [];
  return replayAll(cases, { ...options, dataConverter: options.dataConverter ?? client.options.dataConverter });
}

export function summaryTable(outcomes: ReplayOutcome[]): Record<string, string>[] {
  return outcomes.map((o) => ({
    workflow: o.workflowId,
    result: o.ok ? 'ok' : 'FAIL',
    ending: o.endingMatches === null ? 'open (not compared)' : o.endingMatches ? 'as recorded' : 'DIFFERENT',
    error: o.error ? `${o.errorName}: ${o.error}`.slice(0, 160) : '',
  }));
}

import { defaultPayloadConverter, type DataConverter, type Payload } from '@temporalio/common';
import type { Sinks, WorkflowInfo } from '@temporalio/workflow';
import type { temporal } from '@temporalio/proto';
import { Worker, type InjectedSinks, type ReplayWorkerOptions } from '@temporalio/worker';
import { canonicalJson } from '../ledger/fingerprint';

type History = temporal.api.history.v1.IHistory;

export interface ReplayCase {
  workflowId: string;
  /** The run the history is of, when known: runs of one workflow ID replay side by side. */
  runId?: string;
  /** What the history shows, for messages: a scenario name, or the workflow ID again. */
  scenario: string;
  history: History;
}

export type Ending =
  | { kind: 'completed'; result: unknown }
  | { kind: 'failed'; message: string }
  | { kind: 'open' }
  | { kind: 'other'; event: string };

export interface ReplayOptions {
  /** The workflow code to replay against: the module your workers load (workflowsPath). */
  workflowsPath: string;
  /** Sinks your workflows call (their calls are not made during replay, but they must exist). */
  sinks?: InjectedSinks<Sinks>;
  /** Passed to the workflow bundler, e.g. a webpackConfigHook. */
  bundlerOptions?: ReplayWorkerOptions['bundlerOptions'];
  /**
   * The data converter the workers ran with: its payload codecs open encrypted histories (the
   * manifest's payloadKeyIds name the keys they need). Plaintext histories replay with or without it.
   */
  dataConverter?: DataConverter;
}

export interface ReplayOutcome {
  workflowId: string;
  /** The run ID the replay ran the history under. */
  runId?: string;
  scenario: string;
  /** Determinism held and the replayed ending equals the recorded one. */
  ok: boolean;
  /** The determinism violation or replay error, if any. */
  error?: string;
  errorName?: string;
  recorded: Ending;
  replayed?: Ending;
  /** Null when the history had not ended, so there is nothing to compare. */
  endingMatches: boolean | null;
}

const PROBE = require.resolve('../workflow/replay-probe');

/** How the history says the workflow ended, read from its last event. */
export function recordedEnding(history: History): Ending {
  const last = history.events?.[history.events.length - 1];
  if (!last) return { kind: 'open' };
  const completed = last.workflowExecutionCompletedEventAttributes;
  if (completed) {
    const payload = completed.result?.payloads?.[0];
    return { kind: 'completed', result: payload ? defaultPayloadConverter.fromPayload(payload) : undefined };
  }
  const failed = last.workflowExecutionFailedEventAttributes;
  if (failed) return { kind: 'failed', message: failed.failure?.message ?? '' };
  const closing = Object.keys(last).find((k) => /^workflowExecution(Canceled|Terminated|TimedOut|ContinuedAsNew)EventAttributes$/.test(k));
  return closing ? { kind: 'other', event: closing } : { kind: 'open' };
}

/** The activity types the history ran, in order, remote and local: the saga's steps and compensations. */
export function scheduledActivities(history: History): string[] {
  return (history.events ?? []).flatMap((e) => {
    const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
    if (name) return [name];
    // A local activity leaves a marker whose data names its type.
    const marker = e.markerRecordedEventAttributes;
    const data = marker?.markerName === 'core_local_activity' ? marker.details?.data?.payloads?.[0] : undefined;
    const local = data ? (defaultPayloadConverter.fromPayload(data) as { activity_type?: unknown }).activity_type : undefined;
    return typeof local === 'string' ? [local] : [];
  });
}

/**
 * Replays each history against the given workflow code (the current build by
 * default) with its real workflow ID, and checks, beyond determinism, that the
 * workflow ends exactly as the history recorded.
 */
export async function replayAll(cases: ReplayCase[], options: ReplayOptions): Promise<ReplayOutcome[]> {
  const endings = new Map<string, Ending>();
  const record = (info: WorkflowInfo, ending: Ending): void => {
    endings.set(`${info.workflowId}/${info.runId}`, ending);
  };
  const workerOptions: ReplayWorkerOptions = {
    workflowsPath: options.workflowsPath,
    bundlerOptions: options.bundlerOptions,
    dataConverter: options.dataConverter,
    interceptors: { workflowModules: [PROBE] },
    sinks: {
      ...options.sinks,
      replayProbe: {
        completed: { fn: (info: WorkflowInfo, result: unknown) => record(info, { kind: 'completed', result }), callDuringReplay: true },
        failed: { fn: (info: WorkflowInfo, message: string) => record(info, { kind: 'failed', message }), callDuringReplay: true },
      },
    },
  };
  const outcomes: ReplayOutcome[] = [];
  const results = Worker.runReplayHistories(
    workerOptions,
    cases.map((c) => ({ workflowId: c.workflowId, history: c.history })),
  );
  // One history at a time, a result each, in the order given: by position, so runs of one workflow ID stay apart.
  for await (const r of results) {
    const c = cases[outcomes.length];
    if (!c || c.workflowId !== r.workflowId) throw new Error(`replay returned ${r.workflowId} where ${c?.workflowId ?? 'no workflow'} was expected`);
    const replayed = endings.get(`${r.workflowId}/${r.runId}`);
    // The same run given twice must not be judged by the first replay's ending.
    endings.delete(`${r.workflowId}/${r.runId}`);
    let recorded: Ending;
    try {
      recorded = await recordedEndingDecoded(c.history, options.dataConverter);
    } catch (err) {
      // A result sealed with a key not given: the replay cannot be judged, and says why.
      outcomes.push({
        workflowId: r.workflowId,
        runId: r.runId,
        scenario: c.scenario,
        ok: false,
        error: r.error?.message ?? (err as Error).message,
        errorName: r.error?.name ?? (err as Error).name,
        recorded: { kind: 'open' },
        endingMatches: null,
      });
      continue;
    }
    const endingMatches = recorded.kind === 'open' ? null : replayed !== undefined && sameEnding(recorded, replayed);
    outcomes.push({
      workflowId: r.workflowId,
      runId: r.runId,
      scenario: c.scenario,
      ok: !r.error && endingMatches !== false,
      error: r.error?.message,
      errorName: r.error?.name,
      recorded,
      replayed,
      endingMatches,
    });
  }
  return outcomes;
}

/** recordedEnding() of a history whose result payload may be sealed: opened by the data converter's codecs first. */
async function recordedEndingDecoded(history: History, dataConverter: DataConverter | undefined): Promise<Ending> {
  const codecs = dataConverter?.payloadCodecs ?? [];
  const payloads = history.events?.[history.events.length - 1]?.workflowExecutionCompletedEventAttributes?.result?.payloads;
  if (codecs.length === 0 || !payloads?.length) return recordedEnding(history);
  let decoded = payloads as Payload[];
  // Codecs encode in order, so they decode in reverse.
  for (const codec of [...codecs].reverse()) decoded = await codec.decode(decoded);
  return recordedEnding({ events: [{ workflowExecutionCompletedEventAttributes: { result: { payloads: decoded } } }] });
}

function sameEnding(a: Ending, b: Ending): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

export function describeOutcome(o: ReplayOutcome): string {
  if (o.ok) return `${o.workflowId} (${o.scenario}): ok`;
  if (o.error) return `${o.workflowId} (${o.scenario}): ${o.errorName ?? 'error'}: ${o.error}`;
  return (
    `${o.workflowId} (${o.scenario}): replayed to a different ending\n` +
    `  recorded: ${canonicalJson(o.recorded)}\n  replayed: ${canonicalJson(o.replayed ?? null)}`
  );
}

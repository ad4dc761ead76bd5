// A user's code against every subpath of the installed toolkit.
import { Saga, sagaKeys, sagaStatusQuery, sagaCancelUpdate, SagaFailure, type SagaStatus } from '@sagaflow/toolkit/workflow';
import { createLedger, LedgerFailure, migrateLedger, type ForwardOutcome } from '@sagaflow/toolkit/ledger';
import { claimKey, completeKey, IDEMPOTENCY_KEY_PATTERN, type Claim } from '@sagaflow/toolkit/edge';
import { captureHistories, loadHistories, replayHistories, type ReplayOutcome } from '@sagaflow/toolkit/replay';
import { InvalidMessage, processMessage, runJetStreamInbox, type InboxHandler } from '@sagaflow/toolkit/inbox';
import { outboxTableDdl, runOutboxRelay, type OutboxTable } from '@sagaflow/toolkit/outbox';
import { strictDataConverter, UnrepresentableValueError } from '@sagaflow/toolkit/converter';
import { Client } from '@temporalio/client';
import { Pool } from 'pg';

const trips: OutboxTable = { table: 'trip_events', subjectColumn: 'trip_id', source: 'trips', typeName: (t) => `io.example.trip.${t}.v1` };
const handler: InboxHandler<{ n: number }> = {
  source: 'greetings',
  parse: () => {
    throw new InvalidMessage('never');
  },
  newResourceId: (p) => String(p.n),
  apply: async (tx) => {
    await tx.query('SELECT 1');
  },
};
const key: string = sagaKeys('trip-1').undo('hold-flight');
const phase: SagaStatus['phase'] = 'running';
const forward: ForwardOutcome<{ id: string }> = { state: 'completed', result: { id: 'x' } };
const claim: Claim | undefined = undefined;
const outcomes: ReplayOutcome[] = [];
// The toolkit takes the project's own Temporal client and pg pool: one copy of each.
export const strictClient = (client: Client) => new Client({ connection: client.connection, dataConverter: strictDataConverter({ payloadCodecs: [] }) });
export const refusedAt = (err: UnrepresentableValueError): string => err.path;
export const capture = (client: Client) => captureHistories(client, { query: "TaskQueue = 'q'", dir: 'h', label: 'v1', codeVersion: '1' });
export const ledger = (pool: Pool) => createLedger(pool).step('reserve-seat');
export const used = [Saga, key, phase, SagaFailure.CompensationFailed, migrateLedger, LedgerFailure.StepCancelled, sagaStatusQuery, sagaCancelUpdate,
  forward, claimKey, completeKey, IDEMPOTENCY_KEY_PATTERN.test('k'), claim, loadHistories, replayHistories, outcomes, handler, processMessage, runJetStreamInbox, outboxTableDdl('trip_events', 'trip_id'), runOutboxRelay, trips];
// The declarations are real types, not any: these must be errors.
// @ts-expect-error a step name is a string
sagaKeys('trip-1').step(42);
// @ts-expect-error a forward outcome has no state 'maybe'
export const bad: ForwardOutcome = { state: 'maybe' };
// @ts-expect-error a dead letter's reason is one of four
export const reason: import('@sagaflow/toolkit/inbox').DeadLetterReason = 'whatever';
// @ts-expect-error an outbox table names its CloudEvents type
export const untyped: OutboxTable = { table: 't', subjectColumn: 's', source: 'x' };

/**
 * sagaflow/replay: the replay gate. Capture the histories of your sagas'
 * paths into a folder, commit it, and replay every history in your tests
 * against the current workflow code: a change that would break a saga in
 * flight fails as a determinism violation, and one that would make it end
 * differently (result, steps, compensations) fails too.
 */
export { captureHistories, type CaptureOptions } from './capture';
export {
  historyFileName,
  loadCases as loadHistories,
  readHistory,
  readManifest,
  sealingKeyIds,
  startedRunId,
  writeHistory,
  writeManifest,
  type Manifest,
  type ManifestEntry,
} from './fixtures';
export { replayFromServer, summaryTable } from './live';
export {
  describeOutcome,
  recordedEnding,
  replayAll as replayHistories,
  scheduledActivities,
  type Ending,
  type ReplayCase,
  type ReplayOptions,
  type ReplayOutcome,
} from './replay';

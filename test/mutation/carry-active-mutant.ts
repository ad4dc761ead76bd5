/**
 * Jest setup for the mutation scopes whose code runs in Temporal's workflow
 * sandbox (test/mutation/scopes.js, `inWorkflows`). StrykerJS names the mutant
 * planted in a run in this process's environment; workflow code runs in a V8
 * context of its own, which has no `process`, so every mutant there would
 * survive untested. This writes the mutant's id at the top of each workflow
 * bundle a test's worker (or replay of recorded histories) builds or is given, as a `process.env` of the sandbox's own, where
 * Stryker's instrumented code looks for it. Not as Stryker's namespace object:
 * the sandbox freezes every global that exists once the bundle has loaded, and
 * the instrumented code writes its coverage into that object.
 */
import { Worker, type ReplayWorkerOptions, type WorkerOptions } from '@temporalio/worker';
import { BannerPlugin } from 'webpack';

const ACTIVE_MUTANT_ENV = '__STRYKER_ACTIVE_MUTANT__';

function withActiveMutant<O extends WorkerOptions | ReplayWorkerOptions>(options: O): O {
  const id = process.env[ACTIVE_MUTANT_ENV];
  if (id === undefined) return options;
  const banner = `globalThis.process = { env: { ${ACTIVE_MUTANT_ENV}: ${JSON.stringify(id)} } };`;
  // A bundle a test built once for all its workers (the instrumented code, every mutant in it): the banner goes first.
  const prebuilt = options.workflowBundle;
  if (prebuilt && 'code' in prebuilt) return { ...options, workflowBundle: { ...prebuilt, code: `${banner}\n${prebuilt.code}` } };
  if (!options.workflowsPath) return options;
  const hook = options.bundlerOptions?.webpackConfigHook;
  return {
    ...options,
    bundlerOptions: {
      ...options.bundlerOptions,
      webpackConfigHook: (config: Parameters<NonNullable<NonNullable<O['bundlerOptions']>['webpackConfigHook']>>[0]) => {
        const c = hook ? hook(config) : config;
        return { ...c, plugins: [...(c.plugins ?? []), new BannerPlugin({ banner, raw: true, entryOnly: true })] };
      },
    },
  };
}

const create = Worker.create.bind(Worker);
Worker.create = (options: WorkerOptions) => create(withActiveMutant(options));
// Replaying recorded histories (runReplayHistory goes through runReplayHistories too).
const replay = Worker.runReplayHistories.bind(Worker);
Worker.runReplayHistories = (options: ReplayWorkerOptions, histories) => replay(withActiveMutant(options), histories);

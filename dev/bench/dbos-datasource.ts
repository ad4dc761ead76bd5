import { AsyncLocalStorage } from 'node:async_hooks';
import { DBOS } from '@dbos-inc/dbos-sdk';
import {
  assertStillOwnsWorkflow,
  DBOSError,
  DBOSStepAlreadyRecordedError,
  DBOSWorkflowConflictError,
  guardDataSourcePoolPG,
  isPGRetriableTransactionError,
  migrateDataSourcePG,
  registerDataSource,
  replayRecordedStep,
  runTransaction,
  type DataSourceTransactionHandler,
} from '@dbos-inc/dbos-sdk/datasource';
import { Pool, type PoolClient, type PoolConfig } from 'pg';

/**
 * DBOS transactions on node-postgres: the user's statements and DBOS's completion checkpoint
 * (a row of `<schema>.transaction_completion`) commit in one PostgreSQL transaction, so the step
 * takes effect exactly once. DBOS publishes this as @dbos-inc/node-pg-datasource, which the npm
 * registry does not serve at a version for dbos-sdk 5.3.0; this is the same handler written
 * against the SDK's datasource interface (@dbos-inc/dbos-sdk/datasource), statement for
 * statement: a recorded outcome is replayed, a retriable error (serialization, deadlock) runs the
 * transaction again, an error is recorded, and a completion insert that finds the row taken rolls
 * back and replays the winner's outcome.
 */
const current = new AsyncLocalStorage<{ client: PoolClient; owner: PgTransactionHandler }>();

/** Output and error as SuperJSON writes plain JSON (what replayRecordedStep reads). */
const serialize = (value: unknown) => JSON.stringify({ json: value ?? null });

class PgTransactionHandler implements DataSourceTransactionHandler {
  #pool: Pool | undefined;

  constructor(
    readonly name: string,
    private readonly config: PoolConfig,
    private readonly schema: string,
  ) {}

  async initialize(): Promise<void> {
    const old = this.#pool;
    this.#pool = new Pool(this.config);
    guardDataSourcePoolPG(this.#pool, 'NodePostgresDataSource');
    await old?.end();
    await this.#inTransaction(async (client) => {
      await migrateDataSourcePG(async (sql) => (await client.query(sql)).rows, this.schema);
    });
  }

  /** `fn` on one client between BEGIN and COMMIT; rolled back if it throws. */
  async #inTransaction(fn: (client: PoolClient) => Promise<void>): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await fn(client);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async destroy(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.end();
  }

  get pool(): Pool {
    if (!this.#pool) throw new Error(`DataSource ${this.name} is not initialized`);
    return this.#pool;
  }

  async deleteCheckpoints(workflowID: string, startStep: number, beforeCommit?: () => Promise<void>): Promise<void> {
    await this.#inTransaction(async (client) => {
      await client.query(`DELETE FROM "${this.schema}".transaction_completion WHERE workflow_id = $1 AND function_num >= $2`, [
        workflowID,
        startStep,
      ]);
      await beforeCommit?.();
    });
  }

  async #recorded(workflowID: string, stepID: number): Promise<{ output: string | null } | { error: string } | undefined> {
    const { rows } = await this.pool.query<{ output: string | null; error: string | null }>(
      `SELECT output, error FROM "${this.schema}".transaction_completion WHERE workflow_id = $1 AND function_num = $2`,
      [workflowID, stepID],
    );
    const row = rows[0];
    if (!row) return undefined;
    return row.error !== null ? { error: row.error } : { output: row.output };
  }

  async #record(client: Pick<PoolClient, 'query'>, workflowID: string, stepID: number, column: 'output' | 'error', value: string): Promise<void> {
    const { rows } = await client.query(
      `INSERT INTO "${this.schema}".transaction_completion (workflow_id, function_num, ${column}) VALUES ($1, $2, $3)
       ON CONFLICT (workflow_id, function_num) DO NOTHING RETURNING workflow_id`,
      [workflowID, stepID, value],
    );
    if (rows.length === 0) throw new DBOSStepAlreadyRecordedError(workflowID, stepID);
  }

  async #replayWinner<R>(workflowID: string, stepID: number): Promise<R> {
    const recorded = await this.#recorded(workflowID, stepID);
    if (!recorded) throw new DBOSError(`Step ${stepID} of workflow ${workflowID} conflicted with a concurrent execution, but no outcome was recorded`);
    return replayRecordedStep<R>(recorded);
  }

  async invokeTransactionFunction<This, Args extends unknown[], Return>(
    _config: unknown,
    target: This,
    func: (this: This, ...args: Args) => Promise<Return>,
    ...args: Args
  ): Promise<Return> {
    const workflowID = DBOS.workflowID;
    const stepID = DBOS.stepID;
    if (workflowID !== undefined && stepID === undefined) throw new Error('DBOS.stepID is undefined inside a workflow');
    const save = workflowID !== undefined;
    let waitMs = 1;
    for (;;) {
      const previous = save ? await this.#recorded(workflowID, stepID!) : undefined;
      if (previous) return replayRecordedStep<Return>(previous);
      const client = await this.pool.connect();
      try {
        await client.query('BEGIN');
        const result = await current.run({ client, owner: this }, () => func.call(target, ...args));
        if (save) {
          await this.#record(client, workflowID, stepID!, 'output', serialize(result));
          await assertStillOwnsWorkflow(workflowID);
        }
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        if (error instanceof DBOSWorkflowConflictError) throw error;
        if (save && error instanceof DBOSStepAlreadyRecordedError) return this.#replayWinner<Return>(workflowID, stepID!);
        if (isPGRetriableTransactionError(error)) {
          await new Promise((resolve) => setTimeout(resolve, waitMs));
          waitMs = Math.min(waitMs * 1.5, 2000);
          continue;
        }
        if (save) {
          const e = error as Error;
          try {
            await this.#record(this.pool, workflowID, stepID!, 'error', serialize({ name: e.name, message: e.message }));
          } catch (recordError) {
            if (recordError instanceof DBOSStepAlreadyRecordedError) return this.#replayWinner<Return>(workflowID, stepID!);
            throw recordError;
          }
        }
        throw error;
      } finally {
        client.release();
      }
    }
  }
}

export class PgDataSource {
  readonly #handler: PgTransactionHandler;

  constructor(
    readonly name: string,
    config: PoolConfig,
    schema = 'dbos',
  ) {
    this.#handler = new PgTransactionHandler(name, config, schema);
    registerDataSource(this.#handler);
  }

  /** The transaction's client, inside a transaction of this data source. */
  get client(): PoolClient {
    const ctx = current.getStore();
    if (!DBOS.isInTransaction() || !ctx || ctx.owner !== this.#handler) {
      throw new Error(`${this.name}.client used outside a DBOS transaction of its own`);
    }
    return ctx.client;
  }

  /** Runs `fn` as a DBOS transaction of the calling workflow (a checkpointed step of its own). */
  runTransaction<T>(fn: () => Promise<T>, name: string): Promise<T> {
    return runTransaction(fn, name, { dsName: this.name, config: {} });
  }
}

import { z } from 'zod';
import { payloadKeysProblem } from './codec/keys';

const optionalUrl = (protocols: string[]) =>
  z
    .string()
    .trim()
    .url()
    .refine((v) => protocols.some((p) => v.startsWith(`${p}:`)), {
      message: `must start with ${protocols.map((p) => `${p}://`).join(' or ')}`,
    })
    .optional();

/**
 * A postgres:// URL. Several hosts, as libpq spells them (`h1:5432,h2:5432`, with
 * `?target_session_attrs=read-write`), for a primary with standbys (src/db/multi-host.ts).
 */
const databaseUrl = z
  .string()
  .trim()
  .refine((v) => /^postgres(ql)?:\/\//.test(v), { message: 'must start with postgres:// or postgresql://' })
  .refine(isDatabaseUrl, {
    message: 'must be a URL: postgresql://user:password@host:port/database (several hosts as host1:port1,host2:port2)',
  })
  .optional();

function isDatabaseUrl(v: string): boolean {
  const m = /^([^/]*\/\/(?:[^@/?#]*@)?)([^/?#]*)(.*)$/.exec(v);
  if (!m) return false;
  const hosts = m[2]!.split(',');
  // Each host must make a URL of its own: the same checks as a one-host URL gets.
  return hosts.every((h, i) => (h !== '' || hosts.length === 1) && URL.canParse(`${m[1]}${h}${i === 0 ? m[3] : ''}`));
}

const hostPort = z
  .string()
  .trim()
  .regex(/^[A-Za-z0-9.\-[\]:]+:\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:7233')
  .optional();

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

export const configSchema = z.object({
  DATABASE_URL: databaseUrl,
  TEMPORAL_ADDRESS: hostPort,
  TEMPORAL_NAMESPACE: z.string().trim().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().trim().min(1).default('sagaflow'),
  /** Printed at start so operators can find the sagas; the dev stack prints its own. */
  TEMPORAL_UI_URL: optionalUrl(['http', 'https']),
  TEMPORAL_CLI_PATH: z.string().trim().min(1).optional(),
  SAGAFLOW_STATE_DIR: z.string().trim().min(1).default('.sagaflow'),
  SAGAFLOW_EMBEDDED_PG_PORT: positiveInt(54329),
  PAYMENT_PROVIDER_URL: optionalUrl(['http', 'https']),
  CARRIER_URL: optionalUrl(['http', 'https']),
  PROVIDER_TIMEOUT_MS: positiveInt(5000),
  /** Connections each process's pool may open (API, worker, services): see docs/operations.md, "Connection budget". */
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(1000).default(10),
  API_HOST: z.string().trim().min(1).default('127.0.0.1'),
  API_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  IDEMPOTENCY_KEY_TTL_HOURS: z.coerce.number().positive().max(24 * 365).default(24),
  /** Requests per second each API client may send on average (a token bucket per client, per API process); 0 turns it off. */
  API_RATE_LIMIT_PER_SECOND: z.coerce.number().min(0).max(1_000_000).default(50),
  /** Requests an API client may send at once above that rate: the size of its bucket. */
  API_RATE_BURST: z.coerce.number().int().min(1).max(1_000_000).default(100),
  /** Unknown or revoked keys one address may send within API_AUTH_FAILURE_WINDOW_SECONDS before it gets 429 for that long; 0 turns it off. */
  API_AUTH_FAILURE_LIMIT: z.coerce.number().int().min(0).max(1_000_000).default(20),
  API_AUTH_FAILURE_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  /** Ledger rows of sagas idle this long are purged: longer than any saga lives, the namespace retention and activity timeouts. */
  LEDGER_RETENTION_DAYS: z.coerce.number().positive().max(3650).default(30),
  /** How often each worker process runs the ledger purge; 0 turns it off. */
  LEDGER_PURGE_INTERVAL_MINUTES: z.coerce.number().min(0).max(1440).default(10),
  SAGAFLOW_WORKER_QUEUES: z
    .string()
    .trim()
    .regex(/^(workflows|orders|inventory|payments|shipping)(,(workflows|orders|inventory|payments|shipping))*$/, 'comma-separated list of workflows, orders, inventory, payments, shipping')
    .optional(),
  SAGAFLOW_WORKER_CONCURRENCY: z
    .string()
    .trim()
    .regex(/^([1-9]\d*|((workflows|orders|inventory|payments|shipping)=[1-9]\d*)(,(workflows|orders|inventory|payments|shipping)=[1-9]\d*)*)$/, 'a positive number, or role=number pairs like payments=20,shipping=10')
    .optional(),
  /** Long polls per task queue in each worker process (workflow and activity tasks alike). */
  SAGAFLOW_WORKER_POLLERS: z.coerce.number().int().min(2).max(100).optional(),
  PAYMENTS_PER_SECOND: z.coerce.number().positive().optional(),
  SHUTDOWN_GRACE_MS: positiveInt(10_000),
  SAGAFLOW_WORKFLOW_BUNDLE: z.string().trim().min(1).optional(),
  SERVICES_HOST: z.string().trim().min(1).default('127.0.0.1'),
  PAYMENT_PROVIDER_PORT: z.coerce.number().int().min(0).max(65535).default(4010),
  CARRIER_PORT: z.coerce.number().int().min(0).max(65535).default(4020),
  SAGAFLOW_SEARCH_ATTRIBUTES: z.enum(['true', 'false']).default('true').transform((v) => v === 'true'),
  SAGAFLOW_ORDER_SAGA_TYPE: z.enum(['orderSagaV2', 'orderSaga']).default('orderSagaV2'),
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalUrl(['http', 'https']),
  OTEL_SERVICE_NAME: z.string().trim().min(1).optional(),
  METRICS_HOST: z.string().trim().min(1).default('127.0.0.1'),
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9464),
  /** The broker of the stream intake: nats://host:port, or several separated by commas (a cluster). */
  NATS_URL: z
    .string()
    .trim()
    .regex(/^nats:\/\/[^,\s]+(,nats:\/\/[^,\s]+)*$/, 'must be nats://host:port, or several separated by commas')
    .optional(),
  NATS_SERVER_PATH: z.string().trim().min(1).optional(),
  /** pg_auto_failover's pg_autoctl for `--postgres ha` (dev/postgres-ha.ts); PATH or /usr/bin when unset. */
  PG_AUTOCTL_PATH: z.string().trim().min(1).optional(),
  /** Copies of each stream the intake and the relay create: 3 on a 3-node JetStream cluster. */
  NATS_STREAM_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  /** Deliveries of an order message that keeps failing (PostgreSQL or Temporal down) before it is dead-lettered. */
  INTAKE_MAX_DELIVER: z.coerce.number().int().min(1).max(1000).default(10),
  /** Order messages delivered to the intake and not yet acked, at most (bounds its memory). */
  INTAKE_MAX_ACK_PENDING: z.coerce.number().int().min(1).max(100_000).default(256),
  /** Order messages each intake process works on at once. */
  INTAKE_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(8),
  /** How long a message's inbox record is kept: any redelivery or producer retry within it creates nothing twice. */
  INBOX_RETENTION_DAYS: z.coerce.number().positive().max(3650).default(30),
  /** 32 bytes, base64 (openssl rand -base64 32): seals webhook signing secrets at rest. Without it, no webhook can be registered. */
  WEBHOOK_SECRETS_KEY: z
    .string()
    .trim()
    .refine((v) => Buffer.from(v, 'base64').length === 32, 'must be 32 bytes in base64 (openssl rand -base64 32)')
    .optional(),
  /** Let webhook endpoints point at loopback and private addresses: the dev stack only, never in production (SSRF). */
  WEBHOOK_ALLOW_PRIVATE_URLS: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
  /**
   * The waits between a webhook delivery's attempts, in ms, comma-separated; its length + 1 is
   * the attempts a delivery gets. Unset: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
   */
  WEBHOOK_RETRY_SCHEDULE_MS: z
    .string()
    .trim()
    .regex(/^\d+(,\d+)*$/, 'comma-separated waits in ms, e.g. 1000,5000,60000')
    .transform((v) => v.split(',').map(Number))
    .optional(),
  /** How long a published order event stays in the outbox table before it is purged. */
  OUTBOX_RETENTION_DAYS: z.coerce.number().positive().max(3650).default(7),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  /** `json` (one JSON object a line, for a collector) or `pretty` (coloured lines for a person at a terminal). */
  LOG_FORMAT: z.enum(['json', 'pretty']).default('json'),
  /**
   * Payload encryption keys (src/codec): `id:base64key[,id2:base64key...]`, 32-byte keys. The first
   * seals new payloads (workflow and activity inputs and results); every key listed opens what it
   * sealed, so a key is rotated by putting a new one first (README, "Payload encryption").
   */
  SAGAFLOW_PAYLOAD_KEYS: z
    .string()
    .trim()
    .superRefine((v, ctx) => {
      const problem = payloadKeysProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  /** The same keys in a file (one a line or comma-separated, `#` comments): a mounted secret. */
  SAGAFLOW_PAYLOAD_KEYS_FILE: z.string().trim().min(1).optional(),
  /** `off` stores payloads readable: for the dev and test stacks only, refused under NODE_ENV=production. */
  SAGAFLOW_PAYLOAD_CODEC: z.enum(['on', 'off']).default('on'),
  /** The bearer token of the codec server (`npm run codec-server`), which decodes payloads for the UI and CLI. */
  SAGAFLOW_CODEC_TOKEN: z.string().trim().min(32, 'at least 32 characters (openssl rand -base64 32)').optional(),
  SAGAFLOW_CODEC_HOST: z.string().trim().min(1).default('127.0.0.1'),
  SAGAFLOW_CODEC_PORT: z.coerce.number().int().min(0).max(65535).default(8888),
  /** Browser origins (a Temporal UI's) allowed to call the codec server, comma-separated; none by default. */
  SAGAFLOW_CODEC_CORS_ORIGINS: z
    .string()
    .trim()
    .regex(/^https?:\/\/[^\s,/]+(,https?:\/\/[^\s,/]+)*$/, 'comma-separated origins, e.g. https://temporal.example.com')
    .transform((v) => v.split(','))
    .optional(),
  /** `production` in the image: payload encryption cannot be turned off there. */
  NODE_ENV: z.string().trim().optional(),
});

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  constructor(readonly issues: { variable: string; message: string }[]) {
    super(
      `Invalid configuration:\n${issues.map((i) => `  ${i.variable}: ${i.message}`).join('\n')}`,
    );
    this.name = 'ConfigError';
  }
}

/**
 * Every command's exit codes (docs/operations.md, "Exit codes"): one per cause an operator
 * fixes differently, so a supervisor or a script can tell them apart without reading stderr.
 */
export const ExitCode = {
  /** Anything unforeseen: its stack is printed. */
  failed: 1,
  /** A bad setting, flag or argument. */
  configuration: 2,
  /** PostgreSQL cannot be reached, or its tables cannot be read. */
  database: 3,
  /** Temporal cannot be reached (a one-shot command; the API and workers wait for it). */
  temporal: 4,
  /** The Temporal namespace does not exist. */
  namespace: 5,
  /** A port to listen on is in use or not permitted. */
  port: 6,
} as const;

/** A start-up failure whose message already names the cause and the fix: shown as that one line, no stack. */
export class StartupError extends Error {
  override name = 'StartupError';
  constructor(
    message: string,
    readonly exitCode: number = ExitCode.failed,
  ) {
    super(message);
  }
}

/** A wrong command-line flag or argument: shown with the command's usage, exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parses the environment once; an invalid value stops start-up with the variable's name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "unset", as shells and compose files commonly leave them.
  const cleaned = Object.fromEntries(
    Object.keys(configSchema.shape)
      .map((k) => [k, env[k]] as const)
      .filter(([, v]) => v !== undefined && v !== ''),
  );
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => ({ variable: String(i.path[0] ?? '?'), message: i.message })),
    );
  }
  return parsed.data;
}

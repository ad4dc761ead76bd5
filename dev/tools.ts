import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/paths';
import { goBuild, isExecutable } from './go-build';

/**
 * The checking tools CI runs beside the tests, each kept in the cache once built:
 * - promtool (Prometheus's own checker) for the alert rules and every /metrics;
 * - compose-check (tools/compose-check), Docker Compose's own parser, for docker-compose.yml;
 * - amtool (Alertmanager's own checker) for the alert routing.
 */

const base = () =>
  process.env.SAGAFLOW_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'sagaflow');

/** The promtool release built by `go install` when no packaged one can be had. */
export const PROMTOOL_MODULE = 'github.com/prometheus/prometheus/cmd/promtool@v0.316.0';

/**
 * promtool: PROMTOOL_PATH, `promtool` on PATH, the cache; else extracted from
 * Debian's `prometheus` package into the cache (seconds; nothing is installed), or
 * else built with go install (many minutes).
 */
export async function ensurePromtool(log: (m: string) => void = () => undefined): Promise<string | undefined> {
  if (process.env.PROMTOOL_PATH) return isExecutable(process.env.PROMTOOL_PATH) ? process.env.PROMTOOL_PATH : undefined;
  const onPath = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim();
  if (onPath) return onPath;
  const dir = path.join(base(), 'promtool');
  const cached = path.join(dir, 'promtool');
  if (isExecutable(cached)) return cached;
  fs.mkdirSync(dir, { recursive: true });
  if (spawnSync('sh', ['-c', 'command -v apt-get && command -v dpkg-deb'], { stdio: 'ignore' }).status === 0) {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-promtool-'));
    try {
      log("promtool: extracting it from Debian's prometheus package into the cache");
      execFileSync('apt-get', ['download', 'prometheus'], { cwd: work, stdio: 'ignore' });
      const deb = fs.readdirSync(work).find((f) => f.endsWith('.deb'));
      if (deb) {
        execFileSync('dpkg-deb', ['-x', deb, 'x'], { cwd: work, stdio: 'ignore' });
        fs.copyFileSync(path.join(work, 'x', 'usr', 'bin', 'promtool'), cached);
        fs.chmodSync(cached, 0o755);
      }
    } catch (err) {
      log(`promtool: the Debian package could not be had (${(err as Error).message.split('\n')[0]}); building it instead`);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    if (isExecutable(cached)) return cached;
  }
  const built = await goBuild({
    what: 'promtool',
    announce: `promtool (${PROMTOOL_MODULE}) with go install into ${dir}; this takes many minutes, once`,
    args: ['install', '-v', PROMTOOL_MODULE],
    env: { GOBIN: dir },
    output: cached,
    log,
  });
  return built ? cached : undefined;
}

/**
 * amtool: AMTOOL_PATH, `amtool` on PATH, the cache; else extracted from Debian's
 * `prometheus-alertmanager` package into the cache (seconds; nothing is installed).
 * Undefined when none can be had.
 */
export function ensureAmtool(log: (m: string) => void = () => undefined): Promise<string | undefined> {
  if (process.env.AMTOOL_PATH) return Promise.resolve(isExecutable(process.env.AMTOOL_PATH) ? process.env.AMTOOL_PATH : undefined);
  const onPath = spawnSync('sh', ['-c', 'command -v amtool'], { encoding: 'utf8' }).stdout.trim();
  if (onPath) return Promise.resolve(onPath);
  const cached = path.join(base(), 'amtool', 'amtool');
  if (isExecutable(cached)) return Promise.resolve(cached);
  log("amtool: extracting it from Debian's prometheus-alertmanager package into the cache");
  const why = extractFromDebianPackage('prometheus-alertmanager', 'usr/bin/amtool', cached);
  if (why) log(`amtool: ${why}`);
  return Promise.resolve(isExecutable(cached) ? cached : undefined);
}

/**
 * Copies one file of a Debian package (`apt-get download`, `dpkg-deb -x`: no root, nothing
 * installed) to `to`. Undefined when it did; else why not.
 */
function extractFromDebianPackage(pkg: string, file: string, to: string): string | undefined {
  if (spawnSync('sh', ['-c', 'command -v apt-get && command -v dpkg-deb'], { stdio: 'ignore' }).status !== 0) {
    return `no apt-get and dpkg-deb here to fetch Debian's ${pkg} package`;
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `sagaflow-${pkg}-`));
  try {
    execFileSync('apt-get', ['download', pkg], { cwd: work, stdio: 'ignore' });
    const deb = fs.readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) return `apt-get download ${pkg} fetched no package`;
    execFileSync('dpkg-deb', ['-x', deb, 'x'], { cwd: work, stdio: 'ignore' });
    fs.mkdirSync(path.dirname(to), { recursive: true });
    // Copied under another name and renamed: a concurrent caller never runs a half-written file.
    const partial = `${to}.${process.pid}.partial`;
    fs.copyFileSync(path.join(work, 'x', file), partial);
    fs.chmodSync(partial, 0o755);
    fs.renameSync(partial, to);
    return undefined;
  } catch (err) {
    return `Debian's ${pkg} package could not be had (${(err as Error).message.split('\n')[0]}); run apt-get update, or put amtool on PATH`;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** compose-check, built from tools/compose-check into the cache, rebuilt when its source changes. */
export async function ensureComposeCheck(log: (m: string) => void = () => undefined): Promise<string | undefined> {
  const src = path.join(PACKAGE_ROOT, 'tools', 'compose-check');
  const hash = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) hash.update(fs.readFileSync(path.join(src, f)));
  const out = path.join(base(), 'compose-check', hash.digest('hex').slice(0, 12), 'compose-check');
  if (isExecutable(out)) return out;
  const built = await goBuild({
    what: 'compose-check',
    announce: `compose-check (tools/compose-check, Docker Compose's own parser) into ${path.dirname(out)}`,
    args: ['build', '-v', '-o', out, '.'],
    cwd: src,
    output: out,
    log,
  });
  return built ? out : undefined;
}

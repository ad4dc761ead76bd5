/** Reading a process's /metrics page in tests. */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every sample line of a Prometheus text page. */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of the samples named `name` whose labels include `labels`; undefined if there is none. */
export function metricValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return hits.length ? hits.reduce((sum, s) => sum + s.value, 0) : undefined;
}

/** Scrapes `url`, answering a reader of its values. */
export async function scrape(url: string): Promise<(name: string, labels?: Record<string, string>) => number | undefined> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const samples = parseMetrics(await res.text());
  return (name, labels) => metricValue(samples, name, labels);
}

/** The /metrics URL a process printed in its ready line (`"metrics":"http://…/metrics"`). */
export function metricsUrlIn(output: string): string {
  const m = /"metrics":"(http:\/\/[^"]+\/metrics)"/.exec(output);
  if (!m) throw new Error(`no metrics URL in:\n${output}`);
  return m[1]!;
}

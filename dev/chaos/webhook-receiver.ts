import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { verify } from '../../src/webhooks/signing';

/**
 * The soak's webhook receiver: an HTTP server in the driver's own process (the driver
 * is never killed, so what it saw is never lost) that a client of sagaflow would run.
 * It verifies each request's Standard Webhooks signature with the secret the API
 * returned at registration, records every request it gets (webhook-id, event, order,
 * what it answered) in memory and as one JSON line each in a file, and dedupes by
 * webhook-id as a receiver must: a webhook-id it already applied is answered 200 and
 * dropped.
 *
 * It flaps when the fault plan says so, for a stretch at a time:
 * - `500`: every request is answered 500 and not applied;
 * - `hang`: requests are held unanswered until the stretch ends (or the sender's own
 *   time limit), then their sockets destroyed; nothing applied;
 * - `down`: the port is closed (connections refused) and opened again after;
 * - `lost-answer`: requests are applied, then their sockets destroyed before the answer:
 *   the sender never hears of it and sends the same webhook-id again, which the dedupe drops.
 */
export type FlapMode = '500' | 'hang' | 'down' | 'lost-answer';
export const FLAP_MODES: readonly FlapMode[] = ['500', 'hang', 'down', 'lost-answer'];

/** What the receiver made of one request. */
export type HitOutcome =
  /** First time this webhook-id was seen verified: applied, answered 200. */
  | 'applied'
  /** Applied, but the answer was dropped on purpose (lost-answer). */
  | 'applied, answer lost'
  /** Already applied: dropped by the dedupe, answered 200 (or not at all in lost-answer). */
  | 'duplicate'
  | 'answered 500'
  | 'hung'
  | 'bad signature'
  | 'bad request';

export interface Hit {
  at: number;
  webhookId: string;
  /** The CloudEvent's id, type (short: created, completed...) and subject (the order). */
  eventId?: string;
  type?: string;
  orderId?: string;
  path: string;
  outcome: HitOutcome;
}

export interface ReceiverStats {
  hits: number;
  byOutcome: Record<string, number>;
  /** Distinct webhook-ids applied. */
  applied: number;
  /** Requests for a webhook-id already applied (retries after a lost answer, a relay killed mid-attempt). */
  duplicatesDropped: number;
  badSignatures: number;
}

const EVENT_TYPE = /^io\.sagaflow\.order\.([a-z_]+)\.v\d+$/;

export class WebhookReceiver {
  readonly hits: Hit[] = [];
  /** webhook-id → the event it carried, for each applied one. */
  readonly applied = new Map<string, { eventId: string; type: string; orderId: string; path: string }>();
  private server: http.Server | undefined;
  private port = 0;
  private mode: FlapMode | undefined;
  /** Requests the flap under way has answered badly (or not at all). */
  private metDuringFlap = 0;
  private readonly held = new Set<http.ServerResponse>();
  private readonly secrets = new Map<string, string>();
  private readonly file: fs.WriteStream;

  constructor(logFile: string) {
    this.file = fs.createWriteStream(logFile, { flags: 'a' });
    this.file.on('error', () => undefined);
  }

  /** The URL for `path` (e.g. /hooks/chaos). */
  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** The endpoint at `path` signs with `secret`. */
  setSecret(path: string, secret: string): void {
    this.secrets.set(path, secret);
  }

  async start(): Promise<void> {
    await this.listen(0);
  }

  /**
   * Flaps for `ms`, and for a 500, hang or lost-answer flap on until it has met a request (the
   * sender's deliveries come in bursts between relay restarts), at most three times `ms`; ends
   * at once on `signal`. Settles when the stretch is over and the receiver is healthy again;
   * false if it was flapping already.
   */
  async flap(mode: FlapMode, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.mode || signal?.aborted) return false;
    this.mode = mode;
    this.metDuringFlap = 0;
    if (mode === 'down') await this.close();
    const started = Date.now();
    const pause = (wait: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        function done() {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        }
        signal?.addEventListener('abort', done, { once: true });
      });
    await pause(ms);
    while (mode !== 'down' && this.metDuringFlap === 0 && Date.now() - started < 3 * ms && !signal?.aborted) await pause(100);
    this.mode = undefined;
    for (const res of this.held) res.destroy();
    this.held.clear();
    if (mode === 'down') await this.listen(this.port);
    return true;
  }

  get flapping(): FlapMode | undefined {
    return this.mode;
  }

  stats(): ReceiverStats {
    const byOutcome: Record<string, number> = {};
    for (const h of this.hits) byOutcome[h.outcome] = (byOutcome[h.outcome] ?? 0) + 1;
    return {
      hits: this.hits.length,
      byOutcome,
      applied: this.applied.size,
      duplicatesDropped: byOutcome.duplicate ?? 0,
      badSignatures: byOutcome['bad signature'] ?? 0,
    };
  }

  async stop(): Promise<void> {
    this.mode = undefined;
    for (const res of this.held) res.destroy();
    this.held.clear();
    await this.close();
    await new Promise<void>((resolve) => this.file.end(resolve));
  }

  private listen(port: number): Promise<void> {
    const server = http.createServer((req, res) => this.onRequest(req, res));
    // A request held (hang) is answered by nobody: the sender's own time limit ends it.
    server.requestTimeout = 0;
    this.server = server;
    return new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.removeListener('error', reject);
        this.port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return Promise.resolve();
    return new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Keep-alive connections too: a closed receiver refuses, it does not answer on old sockets.
      server.closeAllConnections();
    });
  }

  private record(hit: Omit<Hit, 'at'>): void {
    const full = { at: Date.now(), ...hit };
    this.hits.push(full);
    this.file.write(`${JSON.stringify(full)}\n`);
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      const body = Buffer.concat(chunks).toString('utf8');
      const webhookId = String(req.headers['webhook-id'] ?? '');
      const base = { webhookId, path };
      const secret = this.secrets.get(path);
      const signed =
        secret !== undefined &&
        verify(secret, { id: webhookId, timestamp: String(req.headers['webhook-timestamp'] ?? ''), signature: String(req.headers['webhook-signature'] ?? '') }, body);
      if (!signed) {
        this.record({ ...base, outcome: 'bad signature' });
        res.writeHead(401).end();
        return;
      }
      let event: { id?: unknown; type?: unknown; subject?: unknown };
      try {
        event = JSON.parse(body) as typeof event;
      } catch {
        this.record({ ...base, outcome: 'bad request' });
        res.writeHead(400).end();
        return;
      }
      const type = EVENT_TYPE.exec(String(event.type))?.[1];
      const info = { eventId: String(event.id), type: type ?? String(event.type), orderId: String(event.subject) };
      const mode = this.mode;
      if (mode) this.metDuringFlap += 1;
      if (mode === '500') {
        this.record({ ...base, ...info, outcome: 'answered 500' });
        res.writeHead(500).end();
        return;
      }
      if (mode === 'hang') {
        this.record({ ...base, ...info, outcome: 'hung' });
        this.held.add(res);
        res.on('close', () => this.held.delete(res));
        return;
      }
      // Applied once per webhook-id: the receiver's dedupe.
      const seen = this.applied.has(webhookId);
      if (!seen) this.applied.set(webhookId, { ...info, path });
      if (mode === 'lost-answer') {
        this.record({ ...base, ...info, outcome: seen ? 'duplicate' : 'applied, answer lost' });
        res.destroy();
        return;
      }
      this.record({ ...base, ...info, outcome: seen ? 'duplicate' : 'applied' });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  }
}

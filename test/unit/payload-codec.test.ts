import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { ConfigError, loadConfig } from '../../src/config';
import { EncryptionCodec, PayloadDecryptionError } from '../../src/codec/encryption-codec';
import { parsePayloadKeys } from '../../src/codec/keys';
import { payloadCodecSetting, payloadCodecSettingFromEnv } from '../../src/codec/settings';

const keyText = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;
const codec = (...keys: string[]) => new EncryptionCodec(parsePayloadKeys(keys.join(',')));
const order = { paymentToken: 'tok_secret_4242', shippingAddress: { line1: '7 Hidden Way', postalCode: '10115' } };
const plain = (): Payload => defaultPayloadConverter.toPayload(order);
const text = (p: Payload | undefined, key: string) => Buffer.from(p?.metadata?.[key] ?? []).toString();

async function refusal(fn: () => Promise<unknown>): Promise<PayloadDecryptionError> {
  const err = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PayloadDecryptionError);
  return err as PayloadDecryptionError;
}

describe('the encryption codec', () => {
  test('seals the whole payload under the active key and opens it back, metadata and all', async () => {
    const a = keyText('a');
    const [sealed] = await codec(a).encode([plain()]);
    expect(text(sealed, 'encoding')).toBe('binary/encrypted');
    expect(text(sealed, 'encryption-key-id')).toBe('a');
    expect(Object.keys(sealed!.metadata ?? {}).sort()).toEqual(['encoding', 'encryption-key-id']);
    const bytes = Buffer.from(sealed!.data!);
    for (const secret of ['tok_secret_4242', '7 Hidden Way', 'json/plain']) expect(bytes.includes(secret)).toBe(false);
    const [opened] = await codec(a).decode([sealed!]);
    expect(text(opened, 'encoding')).toBe('json/plain');
    expect(defaultPayloadConverter.fromPayload(opened!)).toEqual(order);
  });

  test('a fresh IV per payload: the same payload sealed twice differs', async () => {
    const c = codec(keyText('a'));
    const [one, two] = await c.encode([plain(), plain()]);
    expect(Buffer.from(one!.data!).equals(Buffer.from(two!.data!))).toBe(false);
    expect(Buffer.from(one!.data!).subarray(0, 12).equals(Buffer.from(two!.data!).subarray(0, 12))).toBe(false);
  });

  test('payloads without the encrypted encoding pass through decode untouched', async () => {
    const p = plain();
    const binary = { metadata: { encoding: Buffer.from('binary/plain') }, data: Buffer.from([1, 2, 3]) };
    const none = { data: Buffer.from('x') };
    expect(await codec(keyText('a')).decode([p, binary, none])).toEqual([p, binary, none]);
  });

  test('rotation: [b, a] seals with b and opens a; [b] alone refuses a, naming it', async () => {
    const [a, b] = [keyText('key-a'), keyText('key-b')];
    const [underA] = await codec(a).encode([plain()]);
    const rotated = codec(b, a);
    expect(defaultPayloadConverter.fromPayload((await rotated.decode([underA!]))[0]!)).toEqual(order);
    const [underB] = await rotated.encode([plain()]);
    expect(text(underB, 'encryption-key-id')).toBe('key-b');
    expect(defaultPayloadConverter.fromPayload((await codec(b).decode([underB!]))[0]!)).toEqual(order);
    const err = await refusal(() => codec(b).decode([underA!]));
    expect(err.keyId).toBe('key-a');
    expect(err.message).toContain('"key-a"');
    expect(err.message).toContain('not configured');
  });

  test.each([
    ['a byte of the ciphertext', (d: Buffer) => (d[20]! ^= 1)],
    ['a byte of the IV', (d: Buffer) => (d[0]! ^= 1)],
    ['a byte of the tag', (d: Buffer) => (d[d.length - 1]! ^= 1)],
  ])('%s altered: refused, naming the key', async (_what, alter) => {
    const a = keyText('key-a');
    const [sealed] = await codec(a).encode([plain()]);
    const data = Buffer.from(sealed!.data!);
    alter(data);
    const err = await refusal(() => codec(a).decode([{ ...sealed!, data }]));
    expect(err.keyId).toBe('key-a');
    expect(err.message).toMatch(/key "key-a" failed authentication/);
  });

  test('relabelled with another configured key, or cut short, or without a key ID: refused', async () => {
    const [a, b] = [keyText('key-a'), keyText('key-b')];
    const [sealed] = await codec(a).encode([plain()]);
    const both = codec(a, b);
    const relabelled = { ...sealed!, metadata: { ...sealed!.metadata, 'encryption-key-id': Buffer.from('key-b') } };
    expect((await refusal(() => both.decode([relabelled]))).message).toMatch(/"key-b" failed authentication/);
    const short = { ...sealed!, data: Buffer.from(sealed!.data!).subarray(0, 20) };
    expect((await refusal(() => both.decode([short]))).message).toMatch(/"key-a" failed authentication/);
    const anonymous = { ...sealed!, metadata: { encoding: sealed!.metadata!.encoding! } };
    expect((await refusal(() => both.decode([anonymous]))).message).toMatch(/no encryption-key-id/);
  });
});

describe('payload keys', () => {
  test('id:base64, several by commas or lines, comments allowed; the first is active', () => {
    const [a, b] = [keyText('2025-01.a'), keyText('old_b')];
    const keys = parsePayloadKeys(`# rotated in January\n${a}\n\n${b} # until the March sagas close\n`);
    expect(keys.map((k) => k.id)).toEqual(['2025-01.a', 'old_b']);
    expect(keys.every((k) => k.key.length === 32)).toBe(true);
    expect(parsePayloadKeys(`${a},${b}`).map((k) => k.id)).toEqual(['2025-01.a', 'old_b']);
  });

  test.each([
    ['', /no key/],
    ['nokey', /key 1: expected id:base64key/],
    [`bad id:${randomBytes(32).toString('base64')}`, /key 1 \("bad id"\): expected id:base64key/],
    [`a:${randomBytes(16).toString('base64')}`, /key 1 \("a"\): must be 32 bytes in base64/],
    [`a:${randomBytes(32).toString('base64').replace('=', '')}x`, /must be 32 bytes in base64/],
    [`a:${randomBytes(32).toString('base64')},a:${randomBytes(32).toString('base64')}`, /key 2 \("a"\): the id "a" is listed twice/],
  ])('%j is refused: %s', (value, message) => {
    expect(() => parsePayloadKeys(value)).toThrow(message);
  });

  test('a bad SAGAFLOW_PAYLOAD_KEYS stops start-up naming it, without echoing key material', () => {
    const secret = randomBytes(16).toString('base64');
    let err: unknown;
    try {
      loadConfig({ SAGAFLOW_PAYLOAD_KEYS: `a:${secret}` });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues.map((i) => i.variable)).toEqual(['SAGAFLOW_PAYLOAD_KEYS']);
    expect((err as Error).message).not.toContain(secret);
  });
});

describe('the payload codec setting', () => {
  const variables = (s: () => unknown) => {
    try {
      s();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return { variables: (e as ConfigError).issues.map((i) => i.variable), message: (e as Error).message };
    }
    throw new Error('no ConfigError');
  };

  test('neither keys nor off: refused, naming SAGAFLOW_PAYLOAD_KEYS', () => {
    const { variables: v, message } = variables(() => payloadCodecSetting(loadConfig({})));
    expect(v).toEqual(['SAGAFLOW_PAYLOAD_KEYS']);
    expect(message).toContain('SAGAFLOW_PAYLOAD_CODEC=off');
  });

  test('off: plaintext, except under NODE_ENV=production, and never beside keys', () => {
    expect(payloadCodecSetting(loadConfig({ SAGAFLOW_PAYLOAD_CODEC: 'off' }))).toEqual({ encryption: 'off' });
    expect(variables(() => payloadCodecSetting(loadConfig({ SAGAFLOW_PAYLOAD_CODEC: 'off', NODE_ENV: 'production' }))).variables).toEqual([
      'SAGAFLOW_PAYLOAD_CODEC',
    ]);
    expect(variables(() => payloadCodecSetting(loadConfig({ SAGAFLOW_PAYLOAD_CODEC: 'off', SAGAFLOW_PAYLOAD_KEYS: keyText('a') }))).variables).toEqual([
      'SAGAFLOW_PAYLOAD_CODEC',
    ]);
    expect(variables(() => payloadCodecSettingFromEnv({ SAGAFLOW_PAYLOAD_CODEC: 'maybe' })).variables).toEqual(['SAGAFLOW_PAYLOAD_CODEC']);
  });

  test('keys from the variable or from a file, not both; an unreadable or bad file is named', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-keys-'));
    try {
      const file = path.join(dir, 'keys');
      fs.writeFileSync(file, `${keyText('new')}\n${keyText('old')}\n`, { mode: 0o600 });
      const fromFile = payloadCodecSettingFromEnv({ SAGAFLOW_PAYLOAD_KEYS_FILE: file });
      expect(fromFile.encryption === 'on' && [fromFile.source, fromFile.keys.map((k) => k.id)]).toEqual(['SAGAFLOW_PAYLOAD_KEYS_FILE', ['new', 'old']]);
      const inline = payloadCodecSettingFromEnv({ SAGAFLOW_PAYLOAD_KEYS: keyText('k') });
      expect(inline.encryption === 'on' && inline.keys.map((k) => k.id)).toEqual(['k']);
      expect(variables(() => payloadCodecSettingFromEnv({ SAGAFLOW_PAYLOAD_KEYS: keyText('k'), SAGAFLOW_PAYLOAD_KEYS_FILE: file })).variables).toEqual([
        'SAGAFLOW_PAYLOAD_KEYS_FILE',
      ]);
      expect(variables(() => payloadCodecSettingFromEnv({ SAGAFLOW_PAYLOAD_KEYS_FILE: path.join(dir, 'missing') })).variables).toEqual([
        'SAGAFLOW_PAYLOAD_KEYS_FILE',
      ]);
      fs.writeFileSync(file, 'new:short\n');
      expect(variables(() => payloadCodecSettingFromEnv({ SAGAFLOW_PAYLOAD_KEYS_FILE: file })).message).toMatch(/must be 32 bytes/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a codec server token shorter than 32 characters is refused', () => {
    expect(variables(() => loadConfig({ SAGAFLOW_CODEC_TOKEN: 'short' })).variables).toEqual(['SAGAFLOW_CODEC_TOKEN']);
  });
});

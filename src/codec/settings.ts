import fs from 'node:fs';
import type { DataConverter } from '@temporalio/common';
import { strictDataConverter } from '@sagaflow/toolkit/converter';
import { ConfigError, configSchema, type Config } from '../config';
import { EncryptionCodec } from './encryption-codec';
import { parsePayloadKeys, type PayloadKey } from './keys';

type CodecConfig = Pick<Config, 'SAGAFLOW_PAYLOAD_KEYS' | 'SAGAFLOW_PAYLOAD_KEYS_FILE' | 'SAGAFLOW_PAYLOAD_CODEC' | 'NODE_ENV'>;

export type PayloadCodecSetting =
  | { encryption: 'on'; keys: PayloadKey[]; source: 'SAGAFLOW_PAYLOAD_KEYS' | 'SAGAFLOW_PAYLOAD_KEYS_FILE' }
  | { encryption: 'off' };

const problem = (variable: string, message: string) => new ConfigError([{ variable, message }]);

/**
 * How this process seals Temporal payloads. Encryption is the default and has
 * no fallback: without keys a process that talks to Temporal refuses to start,
 * since payment tokens and addresses would otherwise be stored readable in
 * every history. Only an explicit SAGAFLOW_PAYLOAD_CODEC=off (the dev and test
 * stacks) runs without, and never under NODE_ENV=production.
 */
export function payloadCodecSetting(config: CodecConfig): PayloadCodecSetting {
  const inline = config.SAGAFLOW_PAYLOAD_KEYS;
  const file = config.SAGAFLOW_PAYLOAD_KEYS_FILE;
  if (inline && file) {
    throw problem('SAGAFLOW_PAYLOAD_KEYS_FILE', 'set SAGAFLOW_PAYLOAD_KEYS or SAGAFLOW_PAYLOAD_KEYS_FILE, not both');
  }
  if (config.SAGAFLOW_PAYLOAD_CODEC === 'off') {
    if (inline || file) {
      throw problem('SAGAFLOW_PAYLOAD_CODEC', `off, yet ${inline ? 'SAGAFLOW_PAYLOAD_KEYS' : 'SAGAFLOW_PAYLOAD_KEYS_FILE'} is set: unset one of them`);
    }
    if (config.NODE_ENV === 'production') {
      throw problem('SAGAFLOW_PAYLOAD_CODEC', 'off is for the dev and test stacks; with NODE_ENV=production set SAGAFLOW_PAYLOAD_KEYS (or SAGAFLOW_PAYLOAD_KEYS_FILE)');
    }
    return { encryption: 'off' };
  }
  if (inline) return { encryption: 'on', keys: parsePayloadKeys(inline), source: 'SAGAFLOW_PAYLOAD_KEYS' };
  if (file) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw problem('SAGAFLOW_PAYLOAD_KEYS_FILE', `cannot read ${file}: ${(err as Error).message}`);
    }
    try {
      return { encryption: 'on', keys: parsePayloadKeys(text), source: 'SAGAFLOW_PAYLOAD_KEYS_FILE' };
    } catch (err) {
      throw problem('SAGAFLOW_PAYLOAD_KEYS_FILE', `${file}: ${(err as Error).message}`);
    }
  }
  throw problem(
    'SAGAFLOW_PAYLOAD_KEYS',
    "required: without it payment tokens and shipping addresses would be stored readable in Temporal's history. " +
      'Set SAGAFLOW_PAYLOAD_KEYS=id:base64key (or SAGAFLOW_PAYLOAD_KEYS_FILE); only a dev or test stack sets SAGAFLOW_PAYLOAD_CODEC=off',
  );
}

/** The codec for a setting, undefined when encryption is off. */
export function codecOf(setting: PayloadCodecSetting): EncryptionCodec | undefined {
  return setting.encryption === 'on' ? new EncryptionCodec(setting.keys) : undefined;
}

/**
 * What every Temporal Client, Worker and replay of this process is given: the toolkit's strict
 * payload converter (a Map, NaN or a class instance in a payload is refused by path rather than
 * sent as something else) and, when encryption is on, the codec.
 */
export function dataConverterOf(setting: PayloadCodecSetting): DataConverter {
  const codec = codecOf(setting);
  return strictDataConverter(codec ? { payloadCodecs: [codec] } : {});
}

/** For a start-up log line: which key seals, which open; or that payloads are stored readable. */
export function describePayloadCodec(setting: PayloadCodecSetting): string {
  if (setting.encryption === 'off') return 'off (SAGAFLOW_PAYLOAD_CODEC=off: payloads stored readable)';
  const [active, ...older] = setting.keys;
  return `AES-256-GCM, sealing with "${active!.id}"${older.length ? `, also opening ${older.map((k) => `"${k.id}"`).join(', ')}` : ''} (${setting.source})`;
}

const codecVariables = configSchema.pick({
  SAGAFLOW_PAYLOAD_KEYS: true,
  SAGAFLOW_PAYLOAD_KEYS_FILE: true,
  SAGAFLOW_PAYLOAD_CODEC: true,
  NODE_ENV: true,
});

/**
 * The setting the environment gives, reading only the payload variables: for
 * code that builds a worker or client without being handed a data converter
 * (a bad value elsewhere in the environment is not its concern).
 */
export function payloadCodecSettingFromEnv(env: NodeJS.ProcessEnv = process.env): PayloadCodecSetting {
  const given = Object.fromEntries(
    Object.keys(codecVariables.shape)
      .map((k) => [k, env[k]] as const)
      .filter(([, v]) => v !== undefined && v !== ''),
  );
  const parsed = codecVariables.safeParse(given);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => ({ variable: String(i.path[0] ?? '?'), message: i.message })));
  }
  return payloadCodecSetting(parsed.data);
}

/** dataConverterOf(payloadCodecSettingFromEnv(env)). */
export function dataConverterFromEnv(env: NodeJS.ProcessEnv = process.env): DataConverter {
  return dataConverterOf(payloadCodecSettingFromEnv(env));
}

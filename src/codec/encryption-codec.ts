import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { METADATA_ENCODING_KEY, type Payload, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { PayloadKey } from './keys';

/** The metadata of a sealed payload, as Temporal's encryption samples write it (the UI and CLI show it as is). */
export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A payload that cannot be opened: sealed with a key not configured here, or altered since. */
export class PayloadDecryptionError extends Error {
  override name = 'PayloadDecryptionError';
  constructor(
    readonly keyId: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

const text = (bytes: Uint8Array | null | undefined): string | undefined =>
  bytes ? Buffer.from(bytes).toString('utf8') : undefined;

/**
 * AES-256-GCM over the whole payload (its metadata and data, as protobuf), a
 * fresh random 12-byte IV per payload, and the key's ID in the sealed payload's
 * metadata. The ID and the encoding are authenticated too (GCM's additional
 * data), so a payload relabelled with another key's ID fails like a tampered one.
 *
 * New payloads are sealed with the first key; any key given opens what it
 * sealed. Payloads without the encrypted encoding pass through decode
 * untouched: histories recorded before encryption, and sagas started then,
 * stay readable.
 */
export class EncryptionCodec implements PayloadCodec {
  private readonly active: PayloadKey;
  private readonly byId: Map<string, Buffer>;

  constructor(keys: readonly PayloadKey[]) {
    const [active] = keys;
    if (!active) throw new Error('an encryption codec needs at least one key');
    this.active = active;
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  /** The configured key IDs, active first. */
  get keyIds(): string[] {
    return [...this.byId.keys()];
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.seal(payload));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.open(payload));
  }

  private seal(payload: Payload): Payload {
    const { id, key } = this.active;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(additionalData(id));
    const plain = temporal.api.common.v1.Payload.encode(payload).finish();
    const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return {
      metadata: {
        [METADATA_ENCODING_KEY]: Buffer.from(ENCRYPTED_ENCODING),
        [KEY_ID_METADATA]: Buffer.from(id),
      },
      data: sealed,
    };
  }

  private open(payload: Payload): Payload {
    if (text(payload.metadata?.[METADATA_ENCODING_KEY]) !== ENCRYPTED_ENCODING) return payload;
    const id = text(payload.metadata?.[KEY_ID_METADATA]);
    if (!id) throw new PayloadDecryptionError(undefined, `an encrypted payload carries no ${KEY_ID_METADATA}: it cannot be opened`);
    const key = this.byId.get(id);
    if (!key) {
      throw new PayloadDecryptionError(
        id,
        `payload sealed with key "${id}", which is not configured (configured: ${this.keyIds.join(', ')}): ` +
          `add it to SAGAFLOW_PAYLOAD_KEYS after the active key`,
      );
    }
    const data = Buffer.from(payload.data ?? []);
    const tampered = () =>
      new PayloadDecryptionError(
        id,
        `payload sealed with key "${id}" failed authentication: its bytes or metadata were altered, or key "${id}" here is not the key that sealed it`,
      );
    if (data.length < IV_BYTES + TAG_BYTES) throw tampered();
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
      decipher.setAAD(additionalData(id));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw tampered();
    }
    return temporal.api.common.v1.Payload.decode(plain);
  }
}

function additionalData(keyId: string): Buffer {
  return Buffer.from(`${ENCRYPTED_ENCODING}\n${keyId}`);
}


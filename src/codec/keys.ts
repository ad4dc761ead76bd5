/**
 * Payload encryption keys as the environment writes them: `id:base64key`,
 * several separated by commas (or, in a keys file, by new lines). The first
 * is the active key, which seals new payloads; every key listed opens what it
 * sealed, so a key is rotated by putting a new one first and keeping the old.
 */
export interface PayloadKey {
  /** Written in each payload's metadata: not secret, never reused for another key. */
  id: string;
  /** 32 bytes: AES-256. */
  key: Buffer;
}

export const KEY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const KEY_BYTES = 32;

/** The keys, active first; throws a message naming what is wrong (never a key's bytes). */
export function parsePayloadKeys(text: string): PayloadKey[] {
  const problems: string[] = [];
  const keys: PayloadKey[] = [];
  const entries = text
    .split(/[,\n]/)
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter((e) => e !== '');
  if (entries.length === 0) throw new Error('no key: expected id:base64key[,id2:base64key...] (the first is active)');
  entries.forEach((entry, i) => {
    const at = entry.indexOf(':');
    const id = at < 0 ? '' : entry.slice(0, at).trim();
    const base64 = at < 0 ? '' : entry.slice(at + 1).trim();
    const where = `key ${i + 1}${id ? ` ("${id}")` : ''}`;
    if (!KEY_ID_PATTERN.test(id)) {
      problems.push(`${where}: expected id:base64key with an id of letters, digits, '.', '_' or '-' (at most 64)`);
      return;
    }
    const key = Buffer.from(base64, 'base64');
    // A typo in base64 is decoded silently into other bytes; only a round trip tells.
    if (key.length !== KEY_BYTES || key.toString('base64') !== base64) {
      problems.push(`${where}: must be 32 bytes in base64 (node -e "console.log(require('crypto').randomBytes(32).toString('base64'))")`);
      return;
    }
    if (keys.some((k) => k.id === id)) {
      problems.push(`${where}: the id "${id}" is listed twice`);
      return;
    }
    keys.push({ id, key });
  });
  if (problems.length) throw new Error(problems.join('; '));
  return keys;
}

/** What parsePayloadKeys would refuse, as one message; undefined if the text is good. */
export function payloadKeysProblem(text: string): string | undefined {
  try {
    parsePayloadKeys(text);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

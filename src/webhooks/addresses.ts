import { lookup } from 'node:dns/promises';
import net from 'node:net';

/**
 * Where a webhook may point. In production an endpoint on a loopback, private,
 * link-local, carrier-grade NAT, multicast or unspecified address is refused (at
 * registration and again before every attempt, since a name can be re-pointed):
 * the API must not become a way into the network it runs in (SSRF). The dev stack
 * allows them (WEBHOOK_ALLOW_PRIVATE_URLS).
 */
export function isPrivateAddress(ip: string): boolean {
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    return (
      a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127) || a >= 224
    );
  }
  const v6 = ip.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(v6);
  if (mapped) return isPrivateAddress(mapped[1]!);
  // The same mapping as URL parsing writes it: ::ffff:c0a8:1 is 192.168.0.1.
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6);
  if (hex) {
    const [hi, lo] = [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16)];
    return isPrivateAddress(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
  }
  return v6 === '::' || v6 === '::1' || /^f[cd]/.test(v6) || /^fe[89ab]/.test(v6) || /^ff/.test(v6);
}

/** Why the URL cannot be a webhook endpoint, or undefined. */
export async function endpointProblem(raw: string, allowPrivate: boolean): Promise<string | undefined> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'not a URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'the URL must be http or https';
  if (url.username || url.password) return 'the URL must not carry credentials';
  if (raw.length > 2048) return 'the URL is longer than 2048 characters';
  if (allowPrivate) return undefined;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  try {
    addresses = net.isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
  } catch {
    return `the host ${host} does not resolve`;
  }
  const inside = addresses.find(isPrivateAddress);
  return inside ? `the host ${host} is a loopback or private address (${inside}): refused` : undefined;
}

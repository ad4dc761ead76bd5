import { isIP, isIPv6 } from 'node:net';

/**
 * Failure text as API clients and webhook receivers may read it: URLs, IP addresses and
 * `host:port` pairs taken out. The saga's own failures name a service and a step, never where
 * it runs; this catches what other layers put in a message they did not write for clients
 * (a driver's `connect ECONNREFUSED 10.0.0.5:5432`, a resolver's `getaddrinfo ENOTFOUND db`).
 * The full text stays in the logs and in Temporal's history for operators.
 */
export const HIDDEN = '(address hidden)';

const URL_LIKE = /\b[a-z][a-z0-9+.-]*:\/\/[^\s'"<>`]+/gi;
const BRACKETED_V6 = /\[[0-9a-f:.%\w]+\](?::\d{1,5})?/gi;
/** Two or more colons among hex digits (and a dotted tail): an IPv6 address, perhaps with a port. */
const V6_CANDIDATE = /(?<![\w:.])[0-9a-f]*:[0-9a-f:]*:[0-9a-f.]*(?:%[\w.-]+)?(?![\w:])/gi;
const V4 = /(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])/g;
/** A host name (letters first, dots and dashes allowed) followed by a port. */
const HOST_PORT = /(?<![\w.-])[a-z][a-z0-9-]*(?:\.[a-z0-9-]+)*:\d{1,5}(?![\w.])/gi;
/** The resolver names the host it could not find. */
const UNRESOLVED = /\b(ENOTFOUND|EAI_AGAIN)\s+[^\s,;)]+/g;

export function redactAddresses(text: string): string {
  return text
    .replace(URL_LIKE, HIDDEN)
    .replace(BRACKETED_V6, HIDDEN)
    .replace(V6_CANDIDATE, (m) => {
      const bare = m.replace(/%.*$/, '');
      return isIPv6(bare) || isIPv6(bare.replace(/:\d{1,5}$/, '')) ? HIDDEN : m;
    })
    .replace(V4, (m) => (isIP(m.replace(/:\d+$/, '')) ? HIDDEN : m))
    .replace(HOST_PORT, HIDDEN)
    .replace(UNRESOLVED, `$1 ${HIDDEN}`);
}

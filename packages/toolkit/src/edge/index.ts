/**
 * sagaflow/edge: per-client HTTP Idempotency-Key records for any Node HTTP
 * server. Claim the key in the transaction that creates the resource; answer
 * by the claim's kind; store the answer with completeKey. See ./keys.ts.
 */
export {
  claimKey,
  completeKey,
  EDGE_DDL,
  EDGE_SCHEMA,
  IDEMPOTENCY_KEY_PATTERN,
  migrateEdge,
  purgeExpiredKeys,
  releaseLease,
  type Claim,
  type ClaimRequest,
} from './keys';
export { fingerprint } from '../ledger/fingerprint';

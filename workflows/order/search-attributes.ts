import { defineSearchAttributeKey } from '@temporalio/common';

/**
 * Search attributes every saga carries, so it can be found in the Temporal UI
 * or with a list filter (`OrderId = 'ord_…'`, `SagaStatus = 'compensating'`).
 * They must be registered on the namespace: the dev stack does it; on a
 * cluster, `temporal operator search-attribute create` (docs/operations.md).
 */
export const OrderIdKey = defineSearchAttributeKey('OrderId', 'KEYWORD');
export const SagaStatusKey = defineSearchAttributeKey('SagaStatus', 'KEYWORD');
export const CurrentStepKey = defineSearchAttributeKey('CurrentStep', 'KEYWORD');

export const SAGA_SEARCH_ATTRIBUTES = [OrderIdKey, SagaStatusKey, CurrentStepKey];

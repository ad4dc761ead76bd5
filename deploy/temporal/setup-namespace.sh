#!/bin/sh
# Once Temporal answers: creates the namespace (if missing) and registers the search
# attributes every saga carries (workflows/order/search-attributes.ts). The API starts
# sagas with them (SAGAFLOW_SEARCH_ATTRIBUTES, default true) and Temporal rejects
# unregistered ones, so the API and the workers wait for this to succeed.
set -eu
: "${TEMPORAL_ADDRESS:?}" "${TEMPORAL_NAMESPACE:?}"
i=0
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -le 90 ] || { echo "Temporal at $TEMPORAL_ADDRESS did not become healthy"; exit 1; }
  echo "waiting for Temporal at $TEMPORAL_ADDRESS ($i)"; sleep 2
done
temporal operator namespace describe --address "$TEMPORAL_ADDRESS" -n "$TEMPORAL_NAMESPACE" >/dev/null 2>&1 ||
  temporal operator namespace create --address "$TEMPORAL_ADDRESS" -n "$TEMPORAL_NAMESPACE" --retention 7d
sa() { temporal operator search-attribute "$@" --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE"; }
add() {
  if sa list | grep -qw "$1"; then echo "$1 is registered"; else sa create --name "$1" --type "$2"; fi
}
add OrderId Keyword
add SagaStatus Keyword
add CurrentStep Keyword
echo "namespace $TEMPORAL_NAMESPACE is ready"

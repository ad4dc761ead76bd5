/** A second saga built only on sagaflow's public API: a trip booking (packages/toolkit/GUIDE.md walks through it). */
export { createTripActivities, type TripActivities, type TripDeps } from './activities';
export { migrateTrips } from './schema';
export { createTripWorker, TRIP_WORKFLOWS_PATH } from './worker';
export * from './types';
export { cancelTripUpdate, confirmTripSignal, tripStatusQuery, tripSaga } from './workflows';

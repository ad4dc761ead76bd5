/** The trip saga's contract: shared by its workflow, activities and callers. Types and names only. */

export type HoldKind = 'flight' | 'hotel' | 'car';

export interface TripInput {
  tripId: string;
  traveller: string;
  flight: string;
  hotel: string;
  car: string;
  deposit: { amountMinor: number; currency: string };
  paymentToken: string;
  /** How long the traveller has to confirm once everything is held and the deposit taken. */
  confirmWithinMs: number;
}

export interface TripResult {
  tripId: string;
  status: 'confirmed' | 'compensated' | 'cancelled';
  depositChargeId?: string;
  failure?: { type: string; message: string };
  completedSteps: string[];
  compensations: { step: string; status: string; attempts: number }[];
}

/** Step names: the second half of every idempotency key. Renaming one breaks trips in flight. */
export const TripStep = {
  recordTrip: 'record-trip',
  holdFlight: 'hold-flight',
  holdHotel: 'hold-hotel',
  holdCar: 'hold-car',
  chargeDeposit: 'charge-deposit',
  bookTrip: 'book-trip',
  issueItinerary: 'issue-itinerary',
} as const;

export const holdStep: Record<HoldKind, string> = {
  flight: TripStep.holdFlight,
  hotel: TripStep.holdHotel,
  car: TripStep.holdCar,
};

/** Business failure types the trip's activities and workflow raise. */
export const TripFailure = {
  SoldOut: 'SoldOut',
  DepositDeclined: 'DepositDeclined',
  ConfirmationTimeout: 'ConfirmationTimeout',
  PaymentUnavailable: 'PaymentUnavailable',
} as const;

export const tripWorkflowId = (tripId: string): string => `trip-${tripId}`;

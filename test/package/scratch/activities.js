const { ApplicationFailure } = require('@temporalio/activity');
const done = (step) => async ({ key }) => ({ step, key });
module.exports = {
  reserveSeat: done('reserve-seat'),
  releaseSeat: done('release-seat'),
  charge: async ({ key, fail }) => {
    if (fail) throw ApplicationFailure.nonRetryable('card declined', 'PaymentDeclined');
    return { step: 'charge', key };
  },
  refund: done('refund'),
  sendWelcome: done('send-welcome'),
};

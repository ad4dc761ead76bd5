// A subscription signup, written against the installed toolkit: a seat, the first month's
// charge, and the welcome e-mail as the pivot.
const { proxyActivities } = require('@temporalio/workflow');
const { Saga } = require('@sagaflow/toolkit/workflow');

const acts = proxyActivities({ startToCloseTimeout: '10s', retry: { maximumAttempts: 2, initialInterval: '50ms' } });

async function signup(input) {
  const saga = new Saga({ retryInitialIntervalMs: 50 });
  saga.bindHandlers();
  const outcome = await saga.execute(async () => {
    await saga.step({ name: "check-eligibility", kind: "retriable", run: ({ key }) => acts.sendWelcome({ key }) });
    await saga.step({ name: 'reserve-seat', kind: 'compensatable', run: ({ key }) => acts.reserveSeat({ key }), undo: (ctx) => acts.releaseSeat({ key: ctx.key }) });
    await saga.step({ name: 'charge-first-month', kind: 'compensatable', run: ({ key }) => acts.charge({ key, fail: input.fail }), undo: (ctx) => acts.refund({ key: ctx.key }) });
    await saga.step({ name: 'send-welcome', kind: 'pivot', run: ({ key }) => acts.sendWelcome({ key }) });
    return 'welcomed';
  });
  return { status: outcome.status, compensations: outcome.compensations.length };
}
module.exports = { signup };

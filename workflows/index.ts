export { orderSaga, orderSagaV2, statusQuery, cancelUpdate } from './order-saga';

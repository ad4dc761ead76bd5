export { orderSaga, statusQuery, cancelUpdate } from './order-saga';

import { addStock, listStock, setStock, StockError, type StockLevel } from '../src/inventory/stock';
import { withDatabase } from '../src/db/with-database';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run inventory -- list [SKU ...]
       npm run inventory -- set SKU UNITS     the units on hand after a count (creates the SKU)
       npm run inventory -- add SKU UNITS     receive units, or write them off with a negative number

Stock on the shelf, in the database at DATABASE_URL. "held" units are reserved by
sagas in flight; an order can take the "free" ones.`;

const table = (levels: StockLevel[]) =>
  levels.length === 0
    ? 'no stock'
    : [
        'sku\ton hand\theld\tfree',
        ...levels.map((l) => `${l.sku}\t${l.onHand}\t${l.reserved}\t${l.available}`),
      ].join('\n');

runMain(USAGE, async () => {
  const [command, ...args] = process.argv.slice(2);
  const wholeNumber = (s: string | undefined) => (s !== undefined && /^-?\d+$/.test(s) ? Number(s) : NaN);
  if (command === undefined || ['--help', '-h', 'help'].includes(command) || args.includes('--help')) {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  const ok = command === 'list' || ((command === 'set' || command === 'add') && args.length === 2 && Number.isSafeInteger(wholeNumber(args[1])));
  if (!ok) {
    console.error(USAGE);
    return 2;
  }
  return withDatabase(async (db) => {
    try {
      if (command === 'list') console.log(table(await listStock(db, args.length ? args : undefined)));
      else {
        const [sku, n] = [args[0]!, wholeNumber(args[1])];
        console.log(table([command === 'set' ? await setStock(db, sku, n) : await addStock(db, sku, n)]));
      }
      return 0;
    } catch (err) {
      if (!(err instanceof StockError)) throw err;
      console.error(err.message);
      return 1;
    }
  });
});

import { integersNotWrittenAsIntegers } from '../../src/http';
import { originForm } from '../../src/api/server';
import { hasControlCharacters } from '../../packages/toolkit/src/text';

describe('integersNotWrittenAsIntegers', () => {
  test.each([
    ['{"amount":{"amountMinor":1999.00000000000001}}', ['amount.amountMinor']],
    ['{"items":[{"quantity":1},{"quantity":1.0000000000000001}]}', ['items.1.quantity']],
    ['{"a" : 1e3, "b": 12.5, "c": [1, 2.0, -0.0, 3E2, "1.0"]}', ['a', 'c.1', 'c.2', 'c.3']],
    ['{"k\\"ey": {"x\\\\": [], "y" :\n 2.0}}', ['k"ey.y']],
    ['{"1.0": "2.0e3", "n": 10, "m": -7}', []],
    ['7.0', ['']],
    ['5000 nested arrays', []],
  ])('%s', (given, paths) => {
    const text = given === '5000 nested arrays' ? `${'['.repeat(5000)}${']'.repeat(5000)}` : given;
    expect(integersNotWrittenAsIntegers(text)).toEqual(paths);
  });
});

describe('originForm', () => {
  test.each(['//a:b/orders', '//[/orders', 'http://127.0.0.1:99999/orders/x', '//evil.example/orders', '/orders\\x', '/orders#x', '*', '', 'orders', '/orders/\u00e9'])(
    '%j is refused',
    (target) => expect(originForm(target)).toBeUndefined(),
  );

  test('a path and its query string, nothing resolved', () => {
    const t = originForm('/x/../orders/a%2Fb?wait=5s&x=%20');
    expect(t?.path).toBe('/x/../orders/a%2Fb');
    expect(t?.query.get('wait')).toBe('5s');
    expect(t?.query.get('x')).toBe(' ');
  });
});

describe('hasControlCharacters', () => {
  test.each([0x00, 0x1f, 0x7f, 0x80, 0x85, 0x9b, 0x9f])('U+%s is a control character', (c) => {
    expect(hasControlCharacters(`a${String.fromCharCode(c)}b`)).toBe(true);
  });
  test.each(['\u00a0', 'é', 'Zoë Straße', '東京', '😀'])('%j is not', (s) => expect(hasControlCharacters(s)).toBe(false));
});

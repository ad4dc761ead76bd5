import { loadConfig } from '../../src/config';
import { parseMultiHostUrl } from '../../src/db/multi-host';

test('a URL with several hosts: each host and port (5432 by default, IPv6 in brackets), the rest kept for pg', () => {
  expect(parseMultiHostUrl('postgresql://u:p%40ss@db1:6432,db2,[::1]:6433/orders?target_session_attrs=read-write&sslmode=require&connect_timeout=3')).toEqual({
    hosts: [
      { host: 'db1', port: 6432 },
      { host: 'db2', port: 5432 },
      { host: '::1', port: 6433 },
    ],
    connectionString: 'postgresql://u:p%40ss@db1:6432/orders?sslmode=require&connect_timeout=3',
    connectTimeoutMs: 3000,
  });
  // target_session_attrs is optional with several hosts (read-write is all sagaflow uses), and "primary" means the same here.
  expect(parseMultiHostUrl('postgres://db1,db2/x')?.hosts).toHaveLength(2);
  expect(parseMultiHostUrl('postgres://db1/x?target_session_attrs=primary')?.hosts).toEqual([{ host: 'db1', port: 5432 }]);
});

test('a one-host URL without target_session_attrs is left to pg as it is', () => {
  expect(parseMultiHostUrl('postgresql://u:p@db:5432/x')).toBeUndefined();
  expect(parseMultiHostUrl('postgresql:///x?host=/var/run/postgresql')).toBeUndefined();
});

test.each([
  ['postgresql://db1,db2/x?target_session_attrs=any', /only read-write \(or primary\)/],
  ['postgresql://db1,db2/x?target_session_attrs=standby', /only read-write/],
  ['postgresql://db1,,db2/x', /invalid host in the database URL: ""/],
  ['postgresql://db1:port,db2/x', /invalid host in the database URL: "db1:port"/],
])('%s is refused, saying why', (url, message) => {
  expect(() => parseMultiHostUrl(url)).toThrow(message);
});

test('DATABASE_URL takes several hosts as libpq spells them, and still refuses what is not a postgres URL', () => {
  const url = 'postgresql://postgres@127.0.0.1:5432,127.0.0.1:5433/sagaflow?target_session_attrs=read-write';
  expect(loadConfig({ DATABASE_URL: url }).DATABASE_URL).toBe(url);
  for (const bad of ['mysql://a,b/x', 'postgresql://a:5432,/x', 'postgresql://a:5432,b:99999/x', 'postgresql://a b,c/x']) {
    expect(() => loadConfig({ DATABASE_URL: bad })).toThrow(/DATABASE_URL/);
  }
});

import * as pg from 'pg';

type PrepareValue = (value: unknown) => unknown;

/**
 * pg's own formatting of a parameter (`prepareValue`): from `pg.utils`, or from `pg/lib/utils` in
 * the versions that lack it. Without either (a pg whose exports hide lib/), nothing is inlined.
 */
const prepareValue: PrepareValue | undefined = (() => {
  const fromMain = (pg as unknown as { utils?: { prepareValue?: PrepareValue } }).utils?.prepareValue;
  if (fromMain) return fromMain;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('pg/lib/utils') as { prepareValue?: PrepareValue }).prepareValue;
  } catch {
    return undefined;
  }
})();

/** A statement and its parameters, as pg's query() takes them. */
export interface Statement {
  text: string;
  values?: readonly unknown[];
}

/**
 * The statement with each `$n` replaced by its value as a quoted literal, so that it can travel in
 * one simple-protocol message with other statements (a BEGIN before it, a COMMIT after it); or
 * undefined when that cannot be done exactly, and the statement must go on its own with parameters.
 *
 * A quoted literal is what a parameter is to PostgreSQL: a value of unknown type that its context
 * resolves (pg sends every parameter untyped, as text, formatted by `prepareValue`, as here). Not
 * inlined: a value pg would send as binary (a Buffer), text with a NUL (a simple-protocol message is
 * NUL-terminated; as a parameter PostgreSQL refuses it with a data error, which is the answer the
 * caller must get), a statement with a backslash anywhere (its string literals would depend on
 * standard_conforming_strings), `$n` beyond the values, and text the scan below cannot follow.
 */
export function inlineStatement(statement: Statement, quote: (text: string) => string): string | undefined {
  const { text } = statement;
  const values = statement.values ?? [];
  if (!prepareValue || text.includes('\\')) return undefined;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    const next = text[i + 1];
    let end: number;
    if (c === "'" || c === '"') {
      end = closingQuote(text, i, c);
    } else if (c === '-' && next === '-') {
      const nl = text.indexOf('\n', i);
      end = nl < 0 ? text.length : nl;
    } else if (c === '/' && next === '*') {
      end = blockCommentEnd(text, i);
    } else if (c === '$' && i > 0 && /[A-Za-z0-9_$]/.test(text[i - 1]!)) {
      end = i + 1; // part of an identifier (a$1)
    } else if (c === '$' && next !== undefined && /[0-9]/.test(next)) {
      let j = i + 1;
      while (j < text.length && /[0-9]/.test(text[j]!)) j++;
      const n = Number(text.slice(i + 1, j));
      if (n < 1 || n > values.length) return undefined;
      const literal = literalOf(values[n - 1], quote);
      if (literal === undefined) return undefined;
      out += literal;
      i = j;
      continue;
    } else if (c === '$') {
      end = dollarQuoteEnd(text, i);
    } else {
      end = i + 1;
    }
    if (end < 0) return undefined;
    out += text.slice(i, end);
    i = end;
  }
  return out;
}

function literalOf(value: unknown, quote: (text: string) => string): string | undefined {
  const prepared = prepareValue!(value);
  if (prepared === null || prepared === undefined) return 'NULL';
  if (typeof prepared !== 'string' || prepared.includes('\u0000')) return undefined;
  return quote(prepared);
}

/** The index after the quote closing the string or identifier opened at `start` (a doubled quote is one character); -1 if none. */
function closingQuote(text: string, start: number, q: string): number {
  for (let j = start + 1; j < text.length; j++) {
    if (text[j] !== q) continue;
    if (text[j + 1] === q) {
      j++;
      continue;
    }
    return j + 1;
  }
  return -1;
}

/** The index after the block comment opened at `start` (they nest); -1 if it never closes. */
function blockCommentEnd(text: string, start: number): number {
  let depth = 0;
  for (let j = start; j < text.length - 1; j++) {
    if (text[j] === '/' && text[j + 1] === '*') {
      depth++;
      j++;
    } else if (text[j] === '*' && text[j + 1] === '/') {
      depth--;
      j++;
      if (depth === 0) return j + 1;
    }
  }
  return -1;
}

/** The index after a dollar-quoted string ($$…$$, $tag$…$tag$) opened at `start`; -1 if `$` opens none here or it never closes. */
function dollarQuoteEnd(text: string, start: number): number {
  const tag = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/.exec(text.slice(start))?.[0];
  if (!tag) return -1;
  const close = text.indexOf(tag, start + tag.length);
  return close < 0 ? -1 : close + tag.length;
}

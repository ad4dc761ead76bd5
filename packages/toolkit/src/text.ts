/**
 * Text as PostgreSQL can store it. A `text` value cannot hold NUL, and a lone
 * UTF-16 surrogate has no UTF-8 encoding at all (Node would silently write
 * U+FFFD): input carrying either is refused at the edge; diagnostics built from
 * arbitrary failure messages are made storable instead.
 */

/** C0, DEL and C1 (U+0080–U+009F): none belongs in text a person typed. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export const hasControlCharacters = (s: string): boolean => CONTROL.test(s);

export const hasLoneSurrogate = (s: string): boolean => LONE_SURROGATE.test(s);

/** NUL and lone surrogates replaced by U+FFFD; everything else kept. */
export function storableText(s: string): string {
  return s.replaceAll('\u0000', '\ufffd').replace(new RegExp(LONE_SURROGATE, 'g'), '\ufffd');
}

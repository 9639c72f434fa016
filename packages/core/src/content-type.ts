import mime from 'mime';

import { InvalidRequestError } from './errors.js';
import { printable } from './keys.js';

/** The media type of a format that the mime database does not know. */
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

/**
 * The media type of a format name, looked up by its last extension in the `mime` database:
 * `csv` → `text/csv; charset=utf-8`, `xlsx` → the OOXML spreadsheet type, `tar.gz` →
 * `application/gzip`, anything unknown → `application/octet-stream`.
 *
 * `text/*` types get `; charset=utf-8` because armlib's handlers write text as UTF-8 and browsers
 * would otherwise guess (often Latin-1) for types without a charset. Other types are left alone:
 * `application/json` is UTF-8 by definition (RFC 8259) and has no charset parameter.
 */
export function contentTypeFor(format: string): string {
  const type = mime.getType(format);
  if (type === null) return DEFAULT_CONTENT_TYPE;
  return type.startsWith('text/') && !/;\s*charset=/i.test(type) ? `${type}; charset=utf-8` : type;
}

/** Longest content type accepted: a header value, stored in every manifest and read on every lookup. */
export const MAX_CONTENT_TYPE_LENGTH = 255;

/**
 * `type/subtype` then any `; name=value` parameters (value a token or a quoted string), in
 * printable ASCII: what RFC 9110 allows in a Content-Type header, so that a stored value can be
 * served as one (no CR/LF to inject another header).
 */
const CONTENT_TYPE_PATTERN =
  /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(?:[ \t]*;[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+=(?:[A-Za-z0-9!#$%&'*+.^_`|~-]+|"(?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*"))*$/;

/** Checks a content type given by a handler; throws {@link InvalidRequestError} naming `field`. */
export function assertValidContentType(value: unknown, field = 'contentType'): asserts value is string {
  if (typeof value !== 'string') throw new InvalidRequestError(field, 'must be a string such as "text/csv"');
  if (value.length > MAX_CONTENT_TYPE_LENGTH) {
    throw new InvalidRequestError(field, `longer than ${String(MAX_CONTENT_TYPE_LENGTH)} characters`);
  }
  if (!CONTENT_TYPE_PATTERN.test(value)) {
    throw new InvalidRequestError(
      field,
      `'${printable(value)}' is not a media type (type/subtype, then optional ; name=value parameters, printable ASCII)`,
    );
  }
}

import mime from 'mime';

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

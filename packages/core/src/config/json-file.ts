import { readFile, stat } from 'node:fs/promises';

import { ConfigError } from '../errors.js';

class JsonFailure extends Error {
  constructor(readonly offset: number) {
    super(`invalid JSON at offset ${offset}`);
  }
}

/**
 * Offset of the first syntax error in `text`, or -1 if it is valid JSON. Only used after
 * `JSON.parse` failed, because V8 does not give a position for every error.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  const fail = (at = i): never => {
    throw new JsonFailure(at);
  };
  const skipSpace = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text.charAt(i))) i++;
  };
  const expect = (char: string): void => {
    skipSpace();
    if (text.charAt(i) !== char) fail();
    i++;
  };
  const string = (): void => {
    i++;
    for (;;) {
      if (i >= text.length) fail();
      const c = text.charAt(i);
      if (c === '"') {
        i++;
        return;
      }
      if (c < ' ') fail();
      if (c !== '\\') {
        i++;
        continue;
      }
      const escaped = text.charAt(i + 1);
      if (escaped === 'u') {
        if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail(i + 1);
        i += 6;
      } else if (escaped !== '' && '"\\/bfnrt'.includes(escaped)) i += 2;
      else fail(i + 1);
    }
  };
  const sequence = (close: string, item: () => void): void => {
    i++;
    skipSpace();
    if (text.charAt(i) === close) {
      i++;
      return;
    }
    for (;;) {
      item();
      skipSpace();
      const c = text.charAt(i);
      i++;
      if (c === close) return;
      if (c !== ',') fail(i - 1);
    }
  };
  const value = (): void => {
    skipSpace();
    const c = text.charAt(i);
    if (c === '{') {
      sequence('}', () => {
        skipSpace();
        if (text.charAt(i) !== '"') fail();
        string();
        expect(':');
        value();
      });
    } else if (c === '[') sequence(']', value);
    else if (c === '"') string();
    else {
      const match = /^(true|false|null|-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?)/.exec(text.slice(i));
      if (match === null) fail();
      else i += match[0].length;
    }
  };
  try {
    value();
    skipSpace();
    return i < text.length ? i : -1;
  } catch (error) {
    if (error instanceof JsonFailure) return error.offset;
    throw error;
  }
}

/** 1-based line and column of an offset. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const lineStart = before.lastIndexOf('\n') + 1;
  return { line: before.split('\n').length, column: offset - lineStart + 1 };
}

function errnoCode(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

/**
 * Reads and parses a JSON config file. A missing or unreadable file, or invalid JSON, is a
 * {@link ConfigError} naming the file (and, for bad JSON, the line and column).
 */
export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    // A FIFO or a device would block the read (a FIFO until a writer comes): only regular files.
    const info = await stat(file);
    if (!info.isFile()) {
      throw new ConfigError(`cannot read config file ${file}`, [{ path: '', message: 'it is not a regular file' }]);
    }
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (ConfigError.is(error)) throw error;
    const reason =
      errnoCode(error) === 'ENOENT'
        ? 'the file does not exist'
        : `the file cannot be read (${error instanceof Error ? error.message : String(error)})`;
    throw new ConfigError(`cannot read config file ${file}`, [{ path: '', message: reason }], { cause: error });
  }
  // Editors on Windows like to start JSON files with a byte order mark.
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    const raw = error instanceof Error ? error.message : String(error);
    const stated = /at position (\d+)/.exec(raw)?.[1];
    const offset = stated === undefined ? jsonErrorOffset(text) : Number(stated);
    const where = offset < 0 ? '' : formatPosition(text, offset);
    const reason = raw.replace(/ in JSON at position \d+.*$/s, '').replace(/, ".*" is not valid JSON$/s, '');
    throw new ConfigError(
      `cannot parse config file ${file}`,
      [{ path: '', message: `invalid JSON${where}: ${reason}` }],
      { cause: error },
    );
  }
}

function formatPosition(text: string, offset: number): string {
  const { line, column } = lineAndColumn(text, offset);
  return ` at line ${line}, column ${column}`;
}

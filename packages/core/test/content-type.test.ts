import { expect } from 'chai';

import { contentTypeFor, DEFAULT_CONTENT_TYPE } from '../src/content-type.js';

describe('contentTypeFor', () => {
  const cases: [string, string][] = [
    ['csv', 'text/csv; charset=utf-8'],
    ['json', 'application/json'],
    ['xlsx', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'],
    ['html', 'text/html; charset=utf-8'],
    ['txt', 'text/plain; charset=utf-8'],
    ['tar.gz', 'application/gzip'],
    ['CSV', 'text/csv; charset=utf-8'],
  ];
  for (const [format, expected] of cases) {
    it(`maps '${format}' to ${expected}`, () => {
      expect(contentTypeFor(format)).to.equal(expected);
    });
  }

  it('falls back to application/octet-stream for unknown formats', () => {
    expect(DEFAULT_CONTENT_TYPE).to.equal('application/octet-stream');
    expect(contentTypeFor('no-such-format-xyz')).to.equal('application/octet-stream');
    expect(contentTypeFor('')).to.equal('application/octet-stream');
  });

  it('adds a charset to text types only', () => {
    expect(contentTypeFor('md')).to.match(/^text\/markdown; charset=utf-8$/);
    expect(contentTypeFor('xml')).to.not.include('charset');
    expect(contentTypeFor('png')).to.equal('image/png');
  });
});

import { expect } from 'chai';

import { BackendError, InvalidRequestError } from '@armlib/core';

import { isNotFound, isRetryable, toBackendError } from '../src/errors.js';

/** An error shaped as the SDK builds them: name, HTTP status in $metadata. */
function sdkError(name: string, status?: number, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`${name} happened`), {
    name,
    ...(status === undefined ? {} : { $metadata: { httpStatusCode: status } }),
    ...extra,
  });
}

describe('@armlib/s3 error translation', function () {
  it('marks throttling, 5xx, timeouts and dropped connections retryable', function () {
    for (const error of [
      sdkError('SlowDown', 503),
      sdkError('ServiceUnavailable', 503),
      sdkError('InternalError', 500),
      sdkError('TooManyRequestsException', 429),
      sdkError('Unknown', 502),
      sdkError('RequestTimeout', 400),
      sdkError('ExpiredToken', 400),
      sdkError('TimeoutError'),
      Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
      Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }),
      new Error('upload failed', { cause: Object.assign(new Error('reset'), { code: 'ETIMEDOUT' }) }),
    ]) {
      expect(isRetryable(error), String(error)).to.equal(true);
      expect(toBackendError(error, 'Op')).to.have.property('retryable', true);
    }
  });

  it('marks 403, 400 and unknown failures not retryable, and keeps the cause', function () {
    for (const error of [
      sdkError('AccessDenied', 403),
      sdkError('InvalidAccessKeyId', 403),
      sdkError('InvalidArgument', 400),
      sdkError('NoSuchBucket', 404),
      new Error('something odd'),
    ]) {
      const translated = toBackendError(error, 'GetObject k');
      expect(BackendError.is(translated)).to.equal(true);
      expect(translated).to.have.property('retryable', false);
      expect(translated.cause).to.equal(error);
      expect(translated.message).to.include('GetObject k');
    }
  });

  it('reads 404s as absent, except a missing bucket', function () {
    expect(isNotFound(sdkError('NoSuchKey', 404))).to.equal(true);
    expect(isNotFound(sdkError('NotFound', 404))).to.equal(true);
    expect(isNotFound(sdkError('NoSuchBucket', 404))).to.equal(false);
    expect(isNotFound(sdkError('AccessDenied', 403))).to.equal(false);
  });

  it('passes armlib errors through unchanged', function () {
    const error = new InvalidRequestError('data', 'bad chunk');
    expect(toBackendError(error, 'upload')).to.equal(error);
  });
});

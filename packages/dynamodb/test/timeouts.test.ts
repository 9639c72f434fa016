import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BackendError, ConfigError, ManualClock } from '@armlib/core';
import * as chai from 'chai';
import chaiAsPromised from 'chai-as-promised';

import { checkDynamoQueueOptions, DYNAMO_CLIENT_TIMEOUTS, DynamoQueueManager } from '../src/index.js';
import type { DynamoQueueManagerOptions } from '../src/index.js';
import { clientConfigOf } from '../src/options.js';
import { silentServer, unacceptingServer } from '@armlib/conformance';
import type { Unresponsive } from '@armlib/conformance';

chai.use(chaiAsPromised);
const { expect } = chai;

/** Options of a queue on `server`; one SDK attempt, so that a call fails after one timeout. */
function optionsOn(server: Unresponsive, extra: Partial<DynamoQueueManagerOptions> = {}): DynamoQueueManagerOptions {
  return {
    tableName: 'armlib-timeouts',
    region: 'us-east-1',
    endpoint: server.url,
    clientConfig: { credentials: { accessKeyId: 'fake', secretAccessKey: 'fake' }, maxAttempts: 1 },
    ...extra,
  };
}

/** What `promise` rejected with (it must reject). */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

/** The options the SDK's HTTP handler of `client` resolved (once it has handled a request). */
function handlerConfig(client: DynamoDBClient): unknown {
  const handler = client.config.requestHandler as unknown as { httpHandlerConfigs(): unknown };
  return handler.httpHandlerConfigs();
}

function expectRetryableTimeout(failure: unknown): void {
  expect(BackendError.is(failure), String(failure)).to.equal(true);
  const error = failure as BackendError;
  expect(error.retryable).to.equal(true);
  expect(error.cause).to.be.instanceOf(Error).with.property('name', 'TimeoutError');
  expect(error.message).to.include('TimeoutError');
}

describe('@armlib/dynamodb client timeouts', function () {
  // Without the timeouts these calls hang: fail in seconds, not at the suite's timeout.
  this.timeout(10_000);

  it('fails a call to a server that accepts and never answers with a retryable BackendError', async function () {
    const server = await silentServer();
    const queue = new DynamoQueueManager(optionsOn(server, { requestTimeoutMs: 200 }), new ManualClock());
    try {
      const started = Date.now();
      expectRetryableTimeout(await rejectionOf(queue.get('k')));
      // The connection was made: the request timeout gave up, after its time had passed.
      expect(server.accepted()).to.be.at.least(1);
      expect(Date.now() - started).to.be.at.least(150);
      expect(handlerConfig(queue.client)).to.include({
        connectionTimeout: DYNAMO_CLIENT_TIMEOUTS.connectTimeoutMs,
        socketTimeout: 200,
      });
    } finally {
      await queue.close();
      await server.close();
    }
  });

  it('fails a call whose connection is never accepted with a retryable BackendError', async function () {
    const server = await unacceptingServer();
    const queue = new DynamoQueueManager(optionsOn(server, { connectTimeoutMs: 200 }), new ManualClock());
    try {
      expectRetryableTimeout(await rejectionOf(queue.get('k')));
      expect(handlerConfig(queue.client)).to.include({
        connectionTimeout: 200,
        socketTimeout: DYNAMO_CLIENT_TIMEOUTS.requestTimeoutMs,
      });
    } finally {
      await queue.close();
      await server.close();
    }
  });

  it('gives the client it builds a connection and a request timeout, 3 s and 10 s by default', function () {
    expect(DYNAMO_CLIENT_TIMEOUTS).to.deep.equal({ connectTimeoutMs: 3000, requestTimeoutMs: 10_000 });
    expect(clientConfigOf({}).requestHandler).to.deep.equal({ connectionTimeout: 3000, socketTimeout: 10_000 });
    expect(clientConfigOf(undefined).requestHandler).to.deep.equal({ connectionTimeout: 3000, socketTimeout: 10_000 });
    const config = clientConfigOf({
      region: 'eu-west-1',
      connectTimeoutMs: 500,
      requestTimeoutMs: 2000,
      clientConfig: { maxAttempts: 2 },
    });
    expect(config).to.deep.include({ region: 'eu-west-1', maxAttempts: 2 });
    expect(config.requestHandler).to.deep.equal({ connectionTimeout: 500, socketTimeout: 2000 });
    // A request handler of the user's is used as given.
    const requestHandler = { httpAgent: { maxSockets: 8 } };
    expect(clientConfigOf({ clientConfig: { requestHandler } }).requestHandler).to.equal(requestHandler);
  });

  it('refuses a timeout that is not an integer from 10 to 3600000, naming its path', function () {
    for (const name of ['connectTimeoutMs', 'requestTimeoutMs'] as const) {
      for (const good of [10, 200, 3_600_000, undefined]) {
        expect(checkDynamoQueueOptions({ [name]: good }), `${name} ${String(good)}`).to.deep.equal([]);
      }
      for (const bad of [0, 9, -1, 3_600_001, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '200', null, true]) {
        const issues = checkDynamoQueueOptions({ [name]: bad });
        expect(
          issues.map((i) => i.path),
          `${name} ${String(bad)}`,
        ).to.deep.equal([`/${name}`]);
        expect(issues[0]?.message).to.include('from 10 to 3600000');
      }
    }
    expect(() => new DynamoQueueManager({ requestTimeoutMs: 0 }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.includes('/requestTimeoutMs');
  });

  it('refuses the timeouts together with a ready client, naming their paths', function () {
    const client = new DynamoDBClient({ region: 'eu-west-1' });
    try {
      const options = { client, connectTimeoutMs: 1000, requestTimeoutMs: 1000 };
      const issues = checkDynamoQueueOptions(options);
      expect(issues.map((i) => i.path)).to.have.members(['/connectTimeoutMs', '/requestTimeoutMs']);
      for (const issue of issues) expect(issue.message).to.include('/client');
      expect(() => new DynamoQueueManager(options))
        .to.throw(ConfigError)
        .with.property('message')
        .that.includes('/requestTimeoutMs');
    } finally {
      client.destroy();
    }
  });

  it('refuses the timeouts together with a request handler of the clientConfig, naming their paths', function () {
    const clientConfig = { requestHandler: { connectionTimeout: 100 } };
    const issues = checkDynamoQueueOptions({ clientConfig, connectTimeoutMs: 1000, requestTimeoutMs: 1000 });
    expect(issues.map((i) => i.path)).to.have.members(['/connectTimeoutMs', '/requestTimeoutMs']);
    for (const issue of issues) expect(issue.message).to.include('/clientConfig/requestHandler');
    expect(() => new DynamoQueueManager({ clientConfig, connectTimeoutMs: 1000 }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.includes('/connectTimeoutMs');
    // Alone, either one is fine.
    expect(checkDynamoQueueOptions({ clientConfig })).to.deep.equal([]);
    expect(checkDynamoQueueOptions({ clientConfig: { maxAttempts: 2 }, requestTimeoutMs: 1000 })).to.deep.equal([]);
  });
});

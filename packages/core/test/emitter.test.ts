import { expect } from 'chai';

import { TypedEmitter } from '../src/util/emitter.js';

interface TestEvents {
  ping: { n: number };
  other: string;
  error: { error: unknown; context: string };
}

describe('TypedEmitter', () => {
  it('delivers payloads to every listener in registration order', () => {
    const emitter = new TypedEmitter<TestEvents>();
    const seen: string[] = [];
    emitter.on('ping', (p) => seen.push(`a${String(p.n)}`));
    emitter.on('ping', (p) => seen.push(`b${String(p.n)}`));
    expect(emitter.emit('ping', { n: 1 })).to.equal(true);
    expect(seen).to.deep.equal(['a1', 'b1']);
  });

  it('returns false when nobody listens', () => {
    const emitter = new TypedEmitter<TestEvents>();
    emitter.on('other', () => undefined);
    expect(emitter.emit('ping', { n: 1 })).to.equal(false);
  });

  it('reports a throwing listener on error, with its event, and still calls the others', () => {
    const emitter = new TypedEmitter<TestEvents>();
    const boom = new Error('boom');
    const errors: { error: unknown; context: string }[] = [];
    const seen: number[] = [];
    emitter.on('error', (e) => errors.push(e));
    emitter.on('ping', () => {
      throw boom;
    });
    emitter.on('ping', (p) => seen.push(p.n));
    expect(() => emitter.emit('ping', { n: 7 })).not.to.throw();
    expect(seen).to.deep.equal([7]);
    expect(errors).to.have.length(1);
    expect(errors[0]?.error).to.equal(boom);
    expect(errors[0]?.context).to.contain("'ping'");
  });

  it('keeps working after a listener threw', () => {
    const emitter = new TypedEmitter<TestEvents>();
    let calls = 0;
    emitter.on('ping', () => {
      calls++;
      throw new Error('always');
    });
    emitter.emit('ping', { n: 1 });
    emitter.emit('ping', { n: 2 });
    expect(calls).to.equal(2);
  });

  it('drops a listener error when nobody listens for error, instead of throwing', () => {
    const emitter = new TypedEmitter<TestEvents>();
    emitter.on('ping', () => {
      throw new Error('unheard');
    });
    expect(() => emitter.emit('ping', { n: 1 })).not.to.throw();
  });

  it('swallows an error thrown by an error listener, without recursion, and calls the other error listeners', () => {
    const emitter = new TypedEmitter<TestEvents>();
    let errorCalls = 0;
    let secondErrorCalls = 0;
    emitter.on('error', () => {
      errorCalls++;
      throw new Error('error listener fails too');
    });
    emitter.on('error', () => {
      secondErrorCalls++;
    });
    emitter.on('ping', () => {
      throw new Error('boom');
    });
    expect(() => emitter.emit('ping', { n: 1 })).not.to.throw();
    expect(errorCalls).to.equal(1);
    expect(secondErrorCalls).to.equal(1);
  });

  it('emits error itself without throwing, unlike a bare EventEmitter', () => {
    const emitter = new TypedEmitter<TestEvents>();
    expect(() => emitter.emit('error', { error: new Error('x'), context: 'test' })).not.to.throw();
  });

  it('once() calls a listener for the first emit only', () => {
    const emitter = new TypedEmitter<TestEvents>();
    const seen: number[] = [];
    emitter.once('ping', (p) => seen.push(p.n));
    emitter.emit('ping', { n: 1 });
    emitter.emit('ping', { n: 2 });
    expect(seen).to.deep.equal([1]);
    expect(emitter.listenerCount('ping')).to.equal(0);
  });

  it('once() removes a listener even when it throws', () => {
    const emitter = new TypedEmitter<TestEvents>();
    let calls = 0;
    emitter.once('ping', () => {
      calls++;
      throw new Error('once');
    });
    emitter.emit('ping', { n: 1 });
    emitter.emit('ping', { n: 2 });
    expect(calls).to.equal(1);
  });

  it('off() removes a listener added with on() or once()', () => {
    const emitter = new TypedEmitter<TestEvents>();
    let calls = 0;
    const listener = (): void => {
      calls++;
    };
    emitter.on('ping', listener);
    emitter.off('ping', listener);
    emitter.once('ping', listener);
    emitter.off('ping', listener);
    emitter.emit('ping', { n: 1 });
    expect(calls).to.equal(0);
    expect(emitter.listenerCount('ping')).to.equal(0);
  });

  it('a listener removed during an emit still gets that emit, not the next', () => {
    const emitter = new TypedEmitter<TestEvents>();
    const seen: string[] = [];
    const second = (): void => {
      seen.push('second');
    };
    emitter.on('ping', () => {
      seen.push('first');
      emitter.off('ping', second);
    });
    emitter.on('ping', second);
    emitter.emit('ping', { n: 1 });
    emitter.emit('ping', { n: 2 });
    expect(seen).to.deep.equal(['first', 'second', 'first']);
  });

  it('counts listeners and removes them all', () => {
    const emitter = new TypedEmitter<TestEvents>();
    emitter.on('ping', () => undefined).on('ping', () => undefined);
    emitter.on('other', () => undefined);
    expect(emitter.listenerCount('ping')).to.equal(2);
    emitter.removeAllListeners();
    expect(emitter.listenerCount('ping')).to.equal(0);
    expect(emitter.listenerCount('other')).to.equal(0);
  });

  it('has no listener limit warning', async () => {
    const emitter = new TypedEmitter<TestEvents>();
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      for (let i = 0; i < 50; i++) emitter.on('ping', () => undefined);
      // Node emits the warning on a later tick.
      await new Promise<void>((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(emitter.listenerCount('ping')).to.equal(50);
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).to.deep.equal([]);
  });
});

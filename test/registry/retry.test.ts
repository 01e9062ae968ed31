// The one retry budget: how many tries it allows, and that Ctrl-C ends a backoff wait.

import { describe, expect, it } from 'vitest';
import { Retries, isNetworkError, retrying } from '../../src/registry/retry.js';

const FAST = { retries: 3, baseDelayMs: 1, maxDelayMs: 2 };
const reset = (): Error => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });

describe('retrying', () => {
  it('tries once plus the policy\'s retries, then gives the last error', async () => {
    let calls = 0;
    const failing = retrying(new Retries(FAST), isNetworkError, async () => {
      calls++;
      throw reset();
    });
    await expect(failing).rejects.toThrow('socket hang up');
    expect(calls).toBe(4);
  });

  it('gives up with the registry\'s last answer rather than a reset that followed it', async () => {
    let calls = 0;
    const answer = Object.assign(new Error('500 Internal Server Error'), { status: 500 });
    const failing = retrying(new Retries(FAST), () => true, async () => {
      throw ++calls % 2 === 1 ? answer : reset();
    });
    await expect(failing).rejects.toBe(answer);
    expect(calls).toBe(4);
  });

  it('returns the first success, and does not retry an error that is not transient', async () => {
    let calls = 0;
    expect(await retrying(new Retries(FAST), isNetworkError, async () => (++calls < 3 ? Promise.reject(reset()) : 'ok'))).toBe('ok');
    expect(calls).toBe(3);
    calls = 0;
    await expect(retrying(new Retries(FAST), isNetworkError, async () => (calls++, Promise.reject(new Error('404'))))).rejects.toThrow('404');
    expect(calls).toBe(1);
  });

  it('honours a smaller count for one operation, and an abort ends the wait', async () => {
    const one = new Retries(FAST, { retries: 1 });
    expect(one.left).toBe(true);
    expect(await one.next()).toBe(true);
    expect(await one.next()).toBe(false);
    const controller = new AbortController();
    const slow = new Retries({ retries: 3, baseDelayMs: 60_000, maxDelayMs: 60_000 }, { signal: controller.signal });
    const waiting = slow.next();
    controller.abort();
    await expect(waiting).rejects.toThrow(/abort/i);
  });
});

// The one retry helper of the registry client. Transient failures (connection errors, 429, 5xx)
// are retried with exponential backoff and jitter; Retry-After wins when the server sends it.
// `Retries` is a budget for one operation: each loop that retries (a request, a manifest read, a
// blob push, a blob resume, a chunk resume, a token request) asks it whether another try is left.

import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  /** First backoff in ms; doubles per attempt. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 4, baseDelayMs: 200, maxDelayMs: 10_000 };

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
]);

/** True for errors of the connection rather than of the request (worth retrying). */
export function isNetworkError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return true;
  }
  return false;
}

export function isRetryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

/** Parses Retry-After (seconds or an HTTP date) into ms; undefined when absent or unparsable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** The wait before retry number `attempt` (0-based). */
function backoffDelay(attempt: number, policy: RetryPolicy, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxDelayMs * 3);
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** The retries left to one operation, and the wait before each. */
export class Retries {
  private used = 0;
  private readonly limit: number;
  private readonly signal: AbortSignal | undefined;

  /** `retries` overrides the policy's count; `signal` cuts a wait short (Ctrl-C). */
  constructor(
    private readonly policy: RetryPolicy,
    options: { retries?: number; signal?: AbortSignal | undefined } = {},
  ) {
    this.limit = options.retries ?? policy.retries;
    this.signal = options.signal;
  }

  /** Whether another try is allowed. */
  get left(): boolean {
    return this.used < this.limit;
  }

  /** Waits the backoff before the next try and counts it; false, at once, when none is left. */
  async next(retryAfterMs?: number): Promise<boolean> {
    if (!this.left) return false;
    await sleep(backoffDelay(this.used++, this.policy, retryAfterMs), undefined, this.signal ? { signal: this.signal } : undefined);
    return true;
  }
}

/**
 * Runs `attempt` until it succeeds, retrying the failures `transient` accepts while `retries`
 * allows. When they run out on a failed connection after an attempt that the registry answered
 * with an HTTP status (a registry that fails a request may also reset it while the body is still
 * being sent), that answer is the error: it says more than the reset.
 */
export async function retrying<T>(retries: Retries, transient: (err: unknown) => boolean, attempt: () => Promise<T>): Promise<T> {
  let answered: unknown;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (hasStatus(err)) answered = err;
      if (!transient(err)) throw err;
      if (!(await retries.next())) throw answered !== undefined && !hasStatus(err) ? answered : err;
    }
  }
}

function hasStatus(err: unknown): boolean {
  return typeof (err as { status?: unknown } | undefined)?.status === 'number';
}

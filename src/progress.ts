// Progress events: what the solver and exporters report while they work. The CLI renders them
// (plain lines, a live TTY view, or JSON); embedders subscribe to the same stream.

export interface StepEvent {
  type: 'step';
  /** A vertex digest, or a name for work outside the DAG (`export`, `push …`). */
  id: string;
  name: string;
  status: 'started' | 'cached' | 'done' | 'error';
  /** Milliseconds since the epoch. */
  at: number;
  durationMs?: number;
  error?: string;
  file?: string;
  line?: number;
  /**
   * On `started` of a step that could have come from the cache: why it did not, in one line
   * (`src/app.js changed`, `parent step [2/4] COPY . . re-ran`, `no cache for this step yet`).
   */
  reason?: string;
}

export interface LogEvent {
  type: 'log';
  id: string;
  stream: 'stdout' | 'stderr';
  data: string;
  at: number;
}

export interface WarningEvent {
  type: 'warning';
  message: string;
  file?: string;
  line?: number;
  /** For a lint, its rule's name (`JSONArgsRecommended`). */
  rule?: string;
}

/**
 * How much of a download has arrived: a layer of a base image. Sent at most every
 * BYTES_INTERVAL_MS per download, and once when it is complete (`current` = `total`).
 */
export interface BytesEvent {
  type: 'bytes';
  /** The blob's digest (in `builder pull`, also the id of the layer's step). */
  id: string;
  current: number;
  total: number;
  /** Milliseconds since the epoch: when the download started, and now. */
  started: number;
  at: number;
}

export const BYTES_INTERVAL_MS = 100;

export type ProgressEvent = StepEvent | LogEvent | WarningEvent | BytesEvent;

export type ProgressListener = (event: ProgressEvent) => void;

/**
 * Reports one unit of work: `started` (with the step's `reason` if it has one), then `done` with its duration or `error`, whose text is
 * `describe(err)` (default: the error's message). The solver's steps and the exporters' work alike.
 */
export async function track<T>(
  emit: ProgressListener,
  { reason, ...step }: { id: string; name: string; file?: string; line?: number; reason?: string },
  work: () => Promise<T>,
  describe: (err: unknown) => string = (err) => (err as Error).message,
): Promise<T> {
  const start = Date.now();
  emit({ type: 'step', ...step, status: 'started', at: start, ...(reason ? { reason } : {}) });
  try {
    const result = await work();
    emit({ type: 'step', ...step, status: 'done', at: Date.now(), durationMs: Date.now() - start });
    return result;
  } catch (err) {
    emit({ type: 'step', ...step, status: 'error', at: Date.now(), durationMs: Date.now() - start, error: describe(err) });
    throw err;
  }
}

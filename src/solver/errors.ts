import type { VertexMeta } from '../definition/index.js';

/**
 * A step failed: names the instruction and where it came from, with the last lines it printed.
 * `cause` is the underlying error when there is one (a SourceNotFoundError for a missing COPY source).
 */
export class StepError extends Error {
  constructor(
    readonly meta: VertexMeta,
    readonly reason: string,
    readonly outputTail: readonly string[] = [],
    options?: { cause?: unknown },
  ) {
    const where = meta.file ? `${meta.file}:${meta.startLine ?? '?'}: ` : '';
    super(`${where}${meta.name}: ${reason}`, options);
    this.name = 'StepError';
  }
}

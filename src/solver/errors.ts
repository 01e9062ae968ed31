import type { VertexMeta } from '../definition/index.js';

/** A step failed: names the instruction and where it came from, with the last lines it printed. */
export class StepError extends Error {
  constructor(
    readonly meta: VertexMeta,
    readonly reason: string,
    readonly outputTail: readonly string[] = [],
  ) {
    const where = meta.file ? `${meta.file}:${meta.startLine ?? '?'}: ` : '';
    super(`${where}${meta.name}: ${reason}`);
    this.name = 'StepError';
  }
}

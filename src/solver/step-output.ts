// What a RUN step prints, as progress and as the tail kept for its error. Both are bounded as
// BuildKit bounds them: each stream's log stops at a size limit with one
// `[output clipped, log limit 2MiB reached]` line, while the container's output keeps being read
// (and dropped) at full speed; the tail keeps the last lines, each cut to a maximum length.

import { StringDecoder } from 'node:string_decoder';
import type { ProgressListener } from '../progress.js';

/** BuildKit's default (BUILDKIT_STEP_LOG_MAX_SIZE). */
const DEFAULT_STEP_LOG_LIMIT = 2 * 1024 * 1024;
const TAIL_LINES = 20;
const TAIL_LINE_BYTES = 1024;
const NEWLINE = 0x0a;

type Stream = 'stdout' | 'stderr';

export class StepOutput {
  private readonly sent = { stdout: 0, stderr: 0 };
  private readonly decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  private readonly tail = new OutputTail(TAIL_LINES, TAIL_LINE_BYTES);

  /** `limit`: bytes of log per stream; negative means no limit. */
  constructor(
    private readonly id: string,
    private readonly emit: ProgressListener,
    private readonly limit: number = DEFAULT_STEP_LOG_LIMIT,
  ) {}

  write(stream: Stream, chunk: Buffer): void {
    this.tail.push(chunk);
    const sent = this.sent[stream];
    this.sent[stream] = sent + chunk.length;
    const decoder = this.decoders[stream];
    let data: string;
    if (this.limit < 0 || sent + chunk.length <= this.limit) data = decoder.write(chunk);
    else if (sent > this.limit) return; // clipped already
    else data = `${decoder.write(chunk.subarray(0, this.limit - sent))}${decoder.end()}\n[output clipped, log limit ${formatSize(this.limit)} reached]\n`;
    if (data) this.emit({ type: 'log', id: this.id, stream, data, at: Date.now() });
  }

  /** The last lines printed (both streams), for the step's error. */
  lastLines(): string[] {
    return this.tail.lines();
  }
}

/** The last `maxLines` lines of a byte stream, each cut to `maxBytes`, without keeping more. */
class OutputTail {
  private readonly done: string[] = [];
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private clipped = false;

  constructor(
    private readonly maxLines: number,
    private readonly maxBytes: number,
  ) {}

  push(chunk: Buffer): void {
    let nl = chunk.indexOf(NEWLINE);
    if (nl < 0) return this.extend(chunk);
    this.extend(chunk.subarray(0, nl));
    this.endLine();
    let start = nl + 1;
    // Only the chunk's last `maxLines` complete lines can survive: skip to them.
    let cut = chunk.lastIndexOf(NEWLINE);
    for (let i = 0; i < this.maxLines && cut >= start; i++) cut = chunk.lastIndexOf(NEWLINE, cut - 1);
    if (cut >= start) start = cut + 1;
    while ((nl = chunk.indexOf(NEWLINE, start)) >= 0) {
      this.extend(chunk.subarray(start, nl));
      this.endLine();
      start = nl + 1;
    }
    this.extend(chunk.subarray(start));
  }

  lines(): string[] {
    const last = this.current();
    return last ? [...this.done, last].slice(-this.maxLines) : [...this.done];
  }

  private extend(bytes: Buffer): void {
    const room = this.maxBytes - this.partialBytes;
    if (bytes.length > room) this.clipped = true;
    if (room <= 0 || bytes.length === 0) return;
    const kept = bytes.length > room ? bytes.subarray(0, room) : bytes;
    // A copy: the chunk's memory is not held on to.
    this.partial.push(Buffer.from(kept));
    this.partialBytes += kept.length;
  }

  private current(): string {
    const text = Buffer.concat(this.partial).toString('utf8');
    return this.clipped ? `${text} [...]` : text;
  }

  private endLine(): void {
    const line = this.current();
    this.partial = [];
    this.partialBytes = 0;
    this.clipped = false;
    this.done.push(line);
    if (this.done.length > this.maxLines) this.done.shift();
  }
}

/** Sizes as BuildKit prints them in the clipped-log line: 2MiB, 512KiB, 100B. */
function formatSize(bytes: number): string {
  for (const [unit, size] of [['MiB', 1024 * 1024], ['KiB', 1024]] as const) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(2))}${unit}`;
  }
  return `${bytes}B`;
}

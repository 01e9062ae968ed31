// What a RUN step prints, as progress and as the tail kept for its error. Both are bounded as
// BuildKit bounds them: each stream's log stops at a size limit with one
// `[output clipped, log limit 2MiB reached]` line, while the container's output keeps being read
// (and dropped) at full speed; the tail keeps the last lines, each cut to a maximum length.
// Beyond BuildKit, as CI systems do: the step's secrets are shown as `***` in both, so a command
// that prints one (by mistake, or in a failure's output) does not put it in logs or errors.

import { StringDecoder } from 'node:string_decoder';
import type { ProgressListener } from '../progress.js';
import { MaskPatterns, StreamMasker } from '../util/mask.js';

/** BuildKit's default (BUILDKIT_STEP_LOG_MAX_SIZE). */
const DEFAULT_STEP_LOG_LIMIT = 2 * 1024 * 1024;
const TAIL_LINES = 20;
const TAIL_LINE_BYTES = 1024;
const NEWLINE = 0x0a;
/**
 * A line of a multi-line secret is masked on its own only from this length: lines such as `{` or
 * `}` of a JSON secret would otherwise mask every brace of the output. The whole value always is.
 */
const MIN_SECRET_LINE_BYTES = 4;

type Stream = 'stdout' | 'stderr';

export class StepOutput {
  private readonly sent = { stdout: 0, stderr: 0 };
  private readonly decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  private readonly maskers?: Record<Stream, StreamMasker>;
  private readonly tail = new OutputTail(TAIL_LINES, TAIL_LINE_BYTES);

  /**
   * `limit`: bytes of log per stream; negative means no limit. `secrets`: values to show as `***`;
   * with any, call end() when the process has exited, before lastLines().
   */
  constructor(
    private readonly id: string,
    private readonly emit: ProgressListener,
    private readonly limit: number = DEFAULT_STEP_LOG_LIMIT,
    secrets: readonly Buffer[] = [],
  ) {
    if (secrets.some((s) => s.length > 0)) {
      const patterns = new MaskPatterns(secretPatterns(secrets));
      this.maskers = { stdout: new StreamMasker(patterns), stderr: new StreamMasker(patterns) };
    }
  }

  write(stream: Stream, chunk: Buffer): void {
    this.show(stream, this.maskers ? this.maskers[stream].write(chunk) : chunk);
  }

  /** The output's end: what masking held back (the start of a secret, maybe) is shown. */
  end(): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.maskers) this.show(stream, this.maskers[stream].end());
      const rest = this.sent[stream] <= this.limit || this.limit < 0 ? this.decoders[stream].end() : '';
      if (rest) this.emit({ type: 'log', id: this.id, stream, data: rest, at: Date.now() });
    }
  }

  /** The last lines printed (both streams), for the step's error. */
  lastLines(): string[] {
    return this.tail.lines();
  }

  private show(stream: Stream, chunk: Buffer): void {
    if (chunk.length === 0) return;
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
}

/** Each secret whole and, for a multi-line one (a PEM key), each of its lines: a tool may print one. */
function secretPatterns(secrets: readonly Buffer[]): Buffer[] {
  const patterns: Buffer[] = [];
  for (const secret of secrets) {
    if (secret.length === 0) continue;
    patterns.push(secret);
    // latin1: one character per byte, so the lines are the value's bytes (ASCII blanks trimmed).
    const lines = secret.toString('latin1').split('\n').map(trimBlanks).filter((l) => l !== '');
    for (const line of lines) {
      // A value with a trailing newline is one line: that line is the secret, however short.
      if (lines.length === 1 || line.length >= MIN_SECRET_LINE_BYTES) patterns.push(Buffer.from(line, 'latin1'));
    }
  }
  return patterns;
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

/** Without leading and trailing spaces, tabs and CRs (by hand: linear whatever the text). */
function trimBlanks(line: string): string {
  const blank = (c: string | undefined) => c === ' ' || c === '\t' || c === '\r';
  let start = 0;
  let end = line.length;
  while (start < end && blank(line[start])) start++;
  while (end > start && blank(line[end - 1])) end--;
  return line.slice(start, end);
}

/** Sizes as BuildKit prints them in the clipped-log line: 2MiB, 512KiB, 100B. */
function formatSize(bytes: number): string {
  for (const [unit, size] of [['MiB', 1024 * 1024], ['KiB', 1024]] as const) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(2))}${unit}`;
  }
  return `${bytes}B`;
}

// The live progress view on a terminal, as BuildKit draws it:
//
//   [+] Building 3.2s (4/6)
//    => [1/4] FROM 127.0.0.1:5000/library/busybox@sha256:…                   0.1s
//    => CACHED [2/4] COPY app.sh /app/                                       0.0s
//    => [3/4] RUN ./app.sh build                                             2.9s
//    => => # compiling module 7 of 9
//    => => sha256:3f4e5d6c7b8a 1.2MB / 3.4MB 2.1MB/s
//
// The frame is repainted at most every REPAINT_MS by moving the cursor up over the previous one and
// overwriting it line by line (each line cleared to its end): no full clear, so no flicker. Lines
// are cut to the terminal's width (never wrapped, which would break the cursor arithmetic) and the
// frame to its height. The last frame stays, followed by the image's digest and names.

import type { BytesEvent, ProgressEvent, StepEvent } from '../progress.js';
import { humanSize } from '../util/size.js';
import type { ProgressOutput, ProgressSummary, Renderer } from './progress.js';

const REPAINT_MS = 100;
/** Lines of a running step's output shown under it. */
const TAIL_LINES = 6;
/** Characters kept of a line a step has not finished. */
const MAX_LINE_CHARS = 1024;
/** Used when the output does not say (not a terminal). */
const DEFAULT_COLUMNS = 80;
const DEFAULT_ROWS = 24;

const SGR = { blue: '\x1b[34m', red: '\x1b[31m', yellow: '\x1b[33m', dim: '\x1b[2m', reset: '\x1b[0m' } as const;
type Colour = keyof typeof SGR | undefined;

interface Step {
  name: string;
  status: StepEvent['status'] | 'running';
  started: number;
  ended?: number;
  /** The last lines the step printed, and each stream's unfinished line. */
  tail: string[];
  partial: { stdout: string; stderr: string };
}

interface Line {
  text: string;
  colour?: Colour;
}

export class TtyProgress implements Renderer {
  private readonly steps = new Map<string, Step>();
  private readonly downloads = new Map<string, BytesEvent>();
  private readonly begun = Date.now();
  private painted = 0;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly out: ProgressOutput,
    private readonly opts: { title: string; color: boolean },
  ) {}

  readonly onProgress = (e: ProgressEvent): void => {
    this.apply(e);
    this.dirty = true;
    this.timer ??= setInterval(() => this.tick(), REPAINT_MS).unref();
  };

  say(text: string): void {
    this.clear();
    this.out.write(text);
    this.dirty = true;
  }

  end(summary?: ProgressSummary): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.steps.size === 0 && !summary) return;
    const failed = [...this.steps.values()].some((s) => s.status === 'error');
    const lines = this.frame(Date.now(), { final: true, finished: !failed && summary !== undefined });
    if (summary) {
      const done: Line[] = [{ text: ` => => ${summary.pulled ? 'pulled' : 'writing'} image ${summary.digest.slice(0, 19)}`, colour: 'blue' }];
      for (const name of summary.names) done.push({ text: ` => => naming to ${name}`, colour: 'blue' });
      const exportAt = lines.findIndex((l) => l.text.startsWith(' => exporting to image'));
      lines.splice(exportAt < 0 ? lines.length : exportAt + 1, 0, ...done);
    }
    this.paint(lines);
  }

  private apply(e: ProgressEvent): void {
    switch (e.type) {
      case 'warning':
        this.say(this.colour(`${e.rule ? `WARN: ${e.rule}: ` : 'WARNING: '}${e.message}${e.file && e.line ? ` (${e.file}:${e.line})` : ''}`, 'yellow') + '\n');
        return;
      case 'bytes':
        if (e.current >= e.total) this.downloads.delete(e.id);
        else this.downloads.set(e.id, e);
        return;
      case 'log': {
        const step = this.steps.get(e.id);
        if (!step) return;
        const lines = (step.partial[e.stream] + e.data).split('\n');
        // A progress bar redraws its line with \r: only what it drew last counts. An unfinished
        // line is kept up to what a screen can show.
        const redrawn = (l: string) => l.slice(l.lastIndexOf('\r') + 1);
        step.partial[e.stream] = redrawn(lines.pop() ?? '').slice(0, MAX_LINE_CHARS);
        step.tail.push(...lines.slice(-TAIL_LINES).map(redrawn));
        step.tail.splice(0, step.tail.length - TAIL_LINES);
        return;
      }
      case 'step': {
        const known = this.steps.get(e.id);
        if (e.status === 'started' || !known) {
          this.steps.set(e.id, { name: e.name, status: 'running', started: e.at, tail: [], partial: { stdout: '', stderr: '' }, ...known });
        }
        const step = this.steps.get(e.id)!;
        if (e.status !== 'started') {
          step.status = e.status;
          step.ended = e.at;
          if (e.status === 'cached') step.started = e.at;
        }
        return;
      }
    }
  }

  private tick(): void {
    const running = [...this.steps.values()].some((s) => s.status === 'running');
    if (!this.dirty && !running) return;
    this.paint(this.frame(Date.now(), { final: false, finished: false }));
  }

  /** The lines of the view at `now`; the last frame shows every step and no step's output. */
  private frame(now: number, { final, finished }: { final: boolean; finished: boolean }): Line[] {
    const steps = [...this.steps.entries()];
    const done = steps.filter(([, s]) => s.status !== 'running').length;
    const header = `[+] ${this.opts.title} ${seconds(now - this.begun)} (${done}/${steps.length})${finished ? ' FINISHED' : ''}`;
    const blocks: Array<{ running: boolean; lines: Line[] }> = steps.map(([id, s]) => {
      const mark = s.status === 'cached' ? 'CACHED ' : s.status === 'error' ? 'ERROR ' : '';
      const colour: Colour = s.status === 'error' ? 'red' : s.status === 'running' ? undefined : 'blue';
      const lines: Line[] = [{ text: this.timed(` => ${mark}${s.name}`, seconds((s.ended ?? now) - s.started)), colour }];
      const download = this.downloads.get(id);
      if (!final && download) lines.push({ text: ` => => ${transferred(download, now)}` });
      if (!final && s.status === 'running') {
        const tail = [...s.tail, s.partial.stdout, s.partial.stderr].filter((l) => l !== '').slice(-TAIL_LINES);
        lines.push(...tail.map((l) => ({ text: ` => => # ${l}`, colour: 'dim' as const })));
      }
      return { running: s.status === 'running', lines };
    });
    // Downloads outside any step (a base image's layers, while its FROM runs).
    const loose = [...this.downloads.values()].filter((d) => !this.steps.has(d.id));
    if (!final && loose.length > 0) {
      blocks.push({ running: true, lines: loose.map((d) => ({ text: ` => => ${d.id.slice(0, 19)} ${transferred(d, now)}` })) });
    }
    let lines = blocks.flatMap((b) => b.lines);
    if (!final) {
      // The cursor cannot move above the screen: the oldest finished steps make room, then the oldest lines.
      const room = this.rows() - 2;
      for (let i = blocks.findIndex((b) => !b.running); lines.length > room && i >= 0; i = blocks.findIndex((b) => !b.running)) {
        blocks.splice(i, 1);
        lines = blocks.flatMap((b) => b.lines);
      }
      lines = lines.slice(-room);
    }
    return [{ text: header }, ...lines];
  }

  /** `text` and, at the right edge, `time`. */
  private timed(text: string, time: string): string {
    const width = this.width() - time.length - 1;
    const left = fit(text, width);
    return `${left}${' '.repeat(Math.max(0, width - displayWidth(left)))} ${time}`;
  }

  /** Draws `lines` over the previous frame, in one write. */
  private paint(lines: Line[]): void {
    const width = this.width();
    const text = lines.map((l) => `${this.colour(fit(l.text, width), l.colour)}\x1b[K\n`).join('');
    // Lines left of a taller previous frame are cleared below the new one.
    const rest = lines.length < this.painted ? '\x1b[J' : '';
    this.out.write(`${this.up()}${text}${rest}`);
    this.painted = lines.length;
    this.dirty = false;
  }

  /** Removes the frame from the screen, leaving the cursor where it started. */
  private clear(): void {
    if (this.painted === 0) return;
    this.out.write(`${this.up()}\x1b[J`);
    this.painted = 0;
  }

  private up(): string {
    return this.painted > 0 ? `\x1b[${this.painted}A\r` : '';
  }

  private colour(text: string, colour: Colour): string {
    return this.opts.color && colour ? `${SGR[colour]}${text}${SGR.reset}` : text;
  }

  /** Usable columns: one fewer than the terminal's, as a line that fills the last one may wrap. */
  private width(): number {
    return Math.max(20, (this.out.columns || DEFAULT_COLUMNS) - 1);
  }

  private rows(): number {
    return Math.max(4, this.out.rows || DEFAULT_ROWS);
  }
}

function seconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}

/** `1.2MB / 3.4MB 2.1MB/s`: what arrived, of how much, at what average rate. */
function transferred(d: BytesEvent, now: number): string {
  const elapsed = Math.max(1, now - d.started) / 1000;
  return `${humanSize(d.current)} / ${humanSize(d.total)} ${humanSize(d.current / elapsed)}/s`;
}

/**
 * `text` made safe for one terminal line and cut to `width` columns: escape sequences and control
 * characters (a step's own colours, a bell) are dropped, tabs become a space, and wide characters
 * (CJK, emoji) count two columns.
 */
export function fit(text: string, width: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])/g, '').replace(/\t/g, ' ').replace(/[\x00-\x1f\x7f-\x9f]/g, '');
  let out = '';
  let used = 0;
  for (const ch of clean) {
    const w = charWidth(ch.codePointAt(0)!);
    if (used + w > width) break;
    out += ch;
    used += w;
  }
  return out;
}

export function displayWidth(text: string): number {
  let used = 0;
  for (const ch of text) used += charWidth(ch.codePointAt(0)!);
  return used;
}

/** Columns a code point takes: 0 for combining marks, 2 for East Asian wide ones and emoji, else 1. */
function charWidth(cp: number): number {
  if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0xfe00 && cp <= 0xfe0f)) return 0;
  const wide =
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1faff) ||
    (cp >= 0x20000 && cp <= 0x3fffd);
  return wide ? 2 : 1;
}

// Renders progress events for `--progress`: `plain` as BuildKit's plain output (a number per
// step, its log lines with the time since the step started, `CACHED` / `DONE 1.2s` / `ERROR`),
// `tty` as a live view (tty-progress.ts), `json` one event per line, `rawjson` one BuildKit
// SolveStatus per line (what `buildctl --progress=rawjson` prints), `quiet` nothing.

import { createHash } from 'node:crypto';
import type { ProgressEvent, ProgressListener, WarningEvent } from '../progress.js';
import type { StepForecast } from '../client/build.js';
import { TtyProgress } from './tty-progress.js';

export const PROGRESS_MODES = ['auto', 'tty', 'plain', 'rawjson', 'json', 'quiet'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];

/** What a renderer draws progress on: stderr, usually (a stream, or the direct writer of output.ts). */
export interface ProgressOutput {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number | undefined;
  readonly rows?: number | undefined;
}

/** What was made or pulled, for the last lines of the live view. */
export interface ProgressSummary {
  names: readonly string[];
  /** The image's manifest digest. */
  digest: string;
  pulled?: boolean;
}

export interface Renderer {
  onProgress: ProgressListener;
  /** A message of the command's own (`interrupted: …`), printed so that the live view does not paint over it. */
  say(text: string): void;
  /** No more events: the live view's last frame, with what was made when the command succeeded. */
  end(summary?: ProgressSummary): void;
}

/**
 * One line per warning, for builds and dry runs alike. A lint reads as BuildKit prints it, rule
 * first, with the place after it (`WARN: JSONArgsRecommended: … (Dockerfile:3)`); other warnings
 * as `WARNING: Dockerfile:3: …`. Line 0 means the warning is not about a line.
 */
export function formatWarning(w: Omit<WarningEvent, 'type'>): string {
  const where = w.file && w.line ? `${w.file}:${w.line}` : undefined;
  if (w.rule) return `WARN: ${w.rule}: ${w.message}${where ? ` (${where})` : ''}`;
  return `WARNING: ${where ? `${where}: ` : ''}${w.message}`;
}

/**
 * `--explain-cache`: one line per step, `[5/7] COPY src/ ./src/: would run: src/app.js changed`
 * or `…: cached`, then how many would run; with `json`, one JSON object per step.
 */
export function formatForecast(steps: readonly StepForecast[], mode: ProgressMode): string {
  if (mode === 'json') return steps.map((s) => `${JSON.stringify(s)}\n`).join('');
  const lines = steps.map((s) => `${s.name}: ${s.cached ? 'cached' : `would run${s.reason ? `: ${s.reason}` : ''}`}\n`);
  const running = steps.filter((s) => !s.cached).length;
  return `${lines.join('')}${running} of ${steps.length} steps would run\n`;
}

/**
 * The renderer for `mode` on `out`. `auto` is the live view when `out` is a terminal (and TERM
 * is not `dumb`), plain otherwise; the live view has colours only on a terminal without NO_COLOR.
 * `title` heads the live view (`Building`, `Pulling`).
 */
export function createRenderer(mode: ProgressMode, out: ProgressOutput, title: string, env: NodeJS.ProcessEnv = process.env): Renderer {
  const kind = mode === 'auto' ? (out.isTTY && env.TERM !== 'dumb' ? 'tty' : 'plain') : mode;
  if (kind === 'tty') return new TtyProgress(out, { title, color: Boolean(out.isTTY) && !env.NO_COLOR });
  const say = (text: string) => void out.write(text);
  const end = () => undefined;
  if (kind === 'json') return { onProgress: (e) => void out.write(`${JSON.stringify(e)}\n`), say, end };
  if (kind === 'rawjson') return { onProgress: rawJsonRenderer(out), say, end };
  if (kind === 'quiet') return { onProgress: () => undefined, say, end };
  return { onProgress: plainRenderer(out), say, end };
}

function plainRenderer(out: ProgressOutput): ProgressListener {
  const numbers = new Map<string, number>();
  const started = new Map<string, number>();
  /** A step's unfinished last line, per stream: stdout and stderr never share a line. */
  const partial = new Map<string, string>();
  let last: string | undefined;

  const number = (id: string, name: string): number => {
    let n = numbers.get(id);
    if (n === undefined) {
      n = numbers.size + 1;
      numbers.set(id, n);
      if (last !== undefined) out.write('\n');
      out.write(`#${n} ${name}\n`);
    }
    last = id;
    return n;
  };

  const since = (id: string) => ((Date.now() - (started.get(id) ?? Date.now())) / 1000).toFixed(3);

  return (e: ProgressEvent) => {
    switch (e.type) {
      case 'warning':
        out.write(`${formatWarning(e)}\n`);
        return;
      case 'bytes':
        return;
      case 'log': {
        const n = numbers.get(e.id) ?? 0;
        const key = `${e.stream}:${e.id}`;
        const lines = ((partial.get(key) ?? '') + e.data).split('\n');
        partial.set(key, lines.pop() ?? '');
        // One write per event: a step printing many short lines costs one write per chunk, not per line.
        const prefix = `#${n} ${since(e.id)} `;
        if (lines.length > 0) out.write(`${prefix}${lines.join(`\n${prefix}`)}\n`);
        return;
      }
      case 'step': {
        const n = number(e.id, e.name);
        if (e.status === 'started') {
          started.set(e.id, e.at);
          // BuildKit-like: the step's line, then why it runs (`#5 cache miss: src/app.js changed`).
          if (e.reason) out.write(`#${n} cache miss: ${e.reason}\n`);
          return;
        }
        // What the step printed without a final newline ends its line now, each stream apart.
        for (const stream of ['stdout', 'stderr']) {
          const rest = partial.get(`${stream}:${e.id}`);
          if (rest) out.write(`#${n} ${since(e.id)} ${rest}\n`);
          partial.delete(`${stream}:${e.id}`);
        }
        if (e.status === 'cached') out.write(`#${n} CACHED\n`);
        else if (e.status === 'done') out.write(`#${n} DONE ${((e.durationMs ?? 0) / 1000).toFixed(1)}s\n`);
        else out.write(`#${n} ERROR: ${e.error ?? 'failed'}\n`);
        return;
      }
    }
  };
}

/**
 * One BuildKit SolveStatus (moby/buildkit client/graph.go) per line: `vertexes` for steps,
 * `statuses` for download bytes, `logs` (stream 1 stdout, 2 stderr, data in base64) and
 * `warnings`. A step named by something other than a digest (`export`) gets the digest of its id.
 */
function rawJsonRenderer(out: ProgressOutput): ProgressListener {
  const startedAt = new Map<string, string>();
  const line = (status: object) => void out.write(`${JSON.stringify(status)}\n`);
  const b64 = (text: string) => Buffer.from(text).toString('base64');
  return (e: ProgressEvent) => {
    const time = (ms: number) => new Date(ms).toISOString();
    switch (e.type) {
      case 'step': {
        const digest = vertexDigest(e.id);
        const started = startedAt.get(digest) ?? time(e.at);
        startedAt.set(digest, started);
        const vertex = { digest, name: e.name, started };
        if (e.status === 'started') return line({ vertexes: [vertex] });
        const completed = { ...vertex, completed: time(e.at) };
        if (e.status === 'cached') return line({ vertexes: [{ ...completed, cached: true }] });
        return line({ vertexes: [e.status === 'error' ? { ...completed, error: e.error ?? 'failed' } : completed] });
      }
      case 'log':
        return line({ logs: [{ vertex: vertexDigest(e.id), stream: e.stream === 'stdout' ? 1 : 2, data: b64(e.data), timestamp: time(e.at) }] });
      case 'bytes':
        return line({
          statuses: [{ id: e.id, ...(startedAt.has(e.id) ? { vertex: e.id } : {}), current: e.current, total: e.total, timestamp: time(e.at), started: time(e.started), ...(e.current === e.total ? { completed: time(e.at) } : {}) }],
        });
      case 'warning': {
        const place = e.file ? { sourceInfo: { filename: e.file }, ...(e.line ? { range: [{ start: { line: e.line }, end: { line: e.line } }] } : {}) } : {};
        return line({ warnings: [{ level: 1, short: b64(e.rule ? `${e.rule}: ${e.message}` : e.message), ...place }] });
      }
    }
  };
}

/** A vertex digest as BuildKit's, for any step id. */
function vertexDigest(id: string): string {
  return /^sha256:[0-9a-f]{64}$/.test(id) ? id : `sha256:${createHash('sha256').update(id).digest('hex')}`;
}

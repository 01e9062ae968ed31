// Renders progress events as BuildKit's plain output does: a number per step, its log lines
// with the time since the step started, and `CACHED` / `DONE 1.2s` / `ERROR` when it ends.
// `json` writes one event per line for tools.

import type { ProgressEvent, ProgressListener, WarningEvent } from '../progress.js';
import type { StepForecast } from '../client/build.js';

export type ProgressMode = 'plain' | 'json' | 'quiet';

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

export function createRenderer(mode: ProgressMode, out: NodeJS.WritableStream): ProgressListener {
  if (mode === 'json') return (e) => out.write(`${JSON.stringify(e)}\n`);
  if (mode === 'quiet') return () => undefined;
  return plainRenderer(out);
}

function plainRenderer(out: NodeJS.WritableStream): ProgressListener {
  const numbers = new Map<string, number>();
  const started = new Map<string, number>();
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
  const flushLine = (n: number, id: string, line: string) => out.write(`#${n} ${since(id)} ${line}\n`);

  return (e: ProgressEvent) => {
    switch (e.type) {
      case 'warning':
        out.write(`${formatWarning(e)}\n`);
        return;
      case 'log': {
        const n = numbers.get(e.id) ?? 0;
        const text = (partial.get(e.id) ?? '') + e.data;
        const lines = text.split('\n');
        partial.set(e.id, lines.pop() ?? '');
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
        const rest = partial.get(e.id);
        if (rest) flushLine(n, e.id, rest);
        partial.delete(e.id);
        if (e.status === 'cached') out.write(`#${n} CACHED\n`);
        else if (e.status === 'done') out.write(`#${n} DONE ${((e.durationMs ?? 0) / 1000).toFixed(1)}s\n`);
        else out.write(`#${n} ERROR: ${e.error ?? 'failed'}\n`);
        return;
      }
    }
  };
}

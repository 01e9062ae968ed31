// Runs the real `bin/builder` (compiled output) as a user would, and inspects what it leaves.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ProgressEvent } from '../../src/progress.js';

export const BUILDER_BIN = fileURLToPath(new URL('../../bin/builder', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runBuilder(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const child = startBuilder(args, opts);
  return finished(child);
}

type StartedBuilder = ChildProcess & { output: { stdout: string; stderr: string }; closed: Promise<CliResult> };

export function startBuilder(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): StartedBuilder {
  const child = spawn(BUILDER_BIN, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as StartedBuilder;
  child.output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => (child.output.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (child.output.stderr += d.toString()));
  // Listened to from the start: a caller may ask only after the process is gone.
  child.closed = new Promise((resolve) => child.on('close', (code) => resolve({ code, ...child.output })));
  return child;
}

export function finished(child: StartedBuilder): Promise<CliResult> {
  return child.closed;
}

/**
 * Waits (up to a minute) until the running builder's stderr shows `what`: a text, or a test on
 * the whole stderr. Throws when the process ended, or the minute passed, without it.
 */
export async function waitForStderr(child: StartedBuilder, what: string | ((stderr: string) => boolean), description = String(what)): Promise<void> {
  const seen = typeof what === 'string' ? (stderr: string) => stderr.includes(what) : what;
  const t0 = Date.now();
  while (!seen(child.output.stderr) && child.exitCode === null && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 10));
  if (!seen(child.output.stderr)) throw new Error(`never saw ${description} in the builder's output:\n${child.output.stderr.slice(-2000)}`);
}

/** The JSON progress events of a `--progress json` run. */
export function events(stderr: string): ProgressEvent[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as ProgressEvent);
}

/** Names of steps that ran (started), and of steps that were cache hits. */
export function stepsByStatus(stderr: string): { ran: string[]; cached: string[] } {
  const ran: string[] = [];
  const cached: string[] = [];
  for (const e of events(stderr)) {
    if (e.type !== 'step' || !e.name.startsWith('[')) continue;
    if (e.status === 'started') ran.push(e.name);
    if (e.status === 'cached') cached.push(e.name);
  }
  return { ran, cached };
}

/**
 * runc containers that builds with state directory `root` started and that still exist (other
 * tests running at the same time have their own roots, hence their own bundle directories).
 */
export function leftoverContainers(root: string): string[] {
  const out = spawnSync('runc', ['list', '--format', 'json'], { encoding: 'utf8' });
  const list = (JSON.parse(out.stdout || 'null') as Array<{ id: string; bundle: string }> | null) ?? [];
  return list.filter((c) => c.id.startsWith('builder-') && c.bundle.startsWith(`${root}/`)).map((c) => c.id);
}

/** Mount points at or below `dir`. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
}

export function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

// The command line writes its text to a pipe, socket or file directly (src/cli/output.ts). A reader
// must still get every byte, in the order written: when the pipe is full and non-blocking, and when
// stdout and stderr share one file.

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BUILDER_BIN } from '../helpers/cli.js';

const OUTPUT_MODULE = new URL('../../dist/cli/output.js', import.meta.url).href;

let work: string | undefined;
afterEach(() => {
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** Runs `script` (an ES module) in node with stdout and stderr piped; stdout is read only after `delayMs`. */
function runScript(script: string, delayMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout.pause();
  setTimeout(() => child.stdout.resume(), delayMs);
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stderr })));
}

const numbered = (count: number) => Array.from({ length: count }, (_, i) => `${String(i).padStart(6, '0')} ${'x'.repeat(92)}\n`).join('');

describe('text on stdout and stderr', () => {
  it('reaches a reader whole and in order through a full non-blocking pipe', async () => {
    // Node's stream for a pipe makes it non-blocking (as another process sharing it may have); 2 MB
    // fills it many times over while the reader waits.
    const script = `
      import { stdout } from ${JSON.stringify(OUTPUT_MODULE)};
      process.stdout;
      for (let i = 0; i < 20000; i++) stdout.write(\`\${String(i).padStart(6, '0')} \${'x'.repeat(92)}\\n\`);
      await stdout.flushed();
    `;
    const r = await runScript(script, 300);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(numbered(20000).length);
    expect(r.stdout === numbered(20000)).toBe(true);
  });

  it('keeps the order of progress and result when both go to one file (> out 2>&1)', () => {
    work = mkdtempSync(join(tmpdir(), 'builder-output-'));
    const context = join(work, 'context');
    mkdirSync(context);
    writeFileSync(join(context, 'a.txt'), 'a\n');
    writeFileSync(join(context, 'Dockerfile'), 'FROM scratch\nCOPY a.txt /a.txt\nCOPY a.txt /b.txt\n');
    const out = join(work, 'out.txt');
    const root = join(work, 'root');
    const cmd = `"$0" build --root "$1" --progress plain "$2" > "$3" 2>&1`;
    for (const run of ['cold', 'cached']) {
      const r = spawnSync('sh', ['-c', cmd, BUILDER_BIN, root, context, out], { encoding: 'utf8' });
      expect(r.status, run).toBe(0);
      const lines = readFileSync(out, 'utf8').split('\n');
      expect(lines.pop(), run).toBe('');
      // The steps in order, then the export, then the digest (stdout) last.
      const steps = lines.filter((l) => /^#\d+ \[/.test(l) || /^#\d+ exporting/.test(l));
      expect(steps.map((l) => l.replace(/^#\d+ /, '')), run).toEqual(['[1/2] COPY a.txt /a.txt', '[2/2] COPY a.txt /b.txt', 'exporting to image']);
      expect(lines.at(-1), run).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(lines.filter((l) => /^sha256:/.test(l)), run).toHaveLength(1);
    }
  });
});

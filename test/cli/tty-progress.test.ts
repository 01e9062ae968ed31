// The live view's lines, drawn into a stream that says it is a narrow terminal: whatever a step
// prints (its own colours, wide characters, tabs, a bell) and however long a step's name, no line
// is wider than the terminal and only the view's own escape sequences reach it.

import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { TtyProgress, displayWidth } from '../../src/cli/tty-progress.js';
import type { ProgressEvent } from '../../src/progress.js';

class Screen extends Writable {
  text = '';
  constructor(
    readonly columns: number,
    readonly rows: number,
  ) {
    super();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

/** The view's own sequences: cursor up, clear to the end of the line or screen, colours. */
const OWN = /\x1b\[(\d+A\r|K|J|\d+m)/g;

describe('the live view', () => {
  it('cuts every line to the width, and shows nothing of a step output but its text', async () => {
    const screen = new Screen(40, 20);
    const view = new TtyProgress(screen, { title: 'Building', color: true });
    const at = Date.now();
    const events: ProgressEvent[] = [
      { type: 'step', id: 'a', name: `[1/2] FROM ${'very-long-registry-name.example.com/'.repeat(3)}app:1`, status: 'cached', at },
      { type: 'step', id: 'b', name: '[2/2] RUN ./build.sh', status: 'started', at },
      { type: 'log', id: 'b', stream: 'stdout', data: '\x1b[31mred\x1b[0m\tand a bell\x07\n', at },
      { type: 'log', id: 'b', stream: 'stderr', data: `${'日本語'.repeat(10)}\n`, at },
      { type: 'log', id: 'b', stream: 'stdout', data: '10%\r50%\r100%', at },
    ];
    for (const e of events) view.onProgress(e);
    // The view repaints on its 100 ms timer, which fires before this longer one.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const running = screen.text.replace(OWN, '').split('\n');
    expect(running).toContain(' => => # red and a bell');
    expect(running).toContain(` => => # ${'日本語'.repeat(5)}`); // 30 columns after the 9 of the prefix
    expect(running).toContain(' => => # 100%');
    view.end();
    const lines = screen.text.replace(OWN, '').split('\n');
    expect(lines.filter((l) => displayWidth(l) > 39)).toEqual([]);
    expect(screen.text.replace(OWN, '')).not.toMatch(/[\x00-\x09\x0b-\x1f]/);
    // The last frame: from the last header on.
    const last = lines.slice(lines.length - 1 - [...lines].reverse().findIndex((l) => l.startsWith('[+]')));
    expect(lines.filter((l) => l.startsWith('[+]')).length).toBeGreaterThan(1);
    expect(last[0]).toMatch(/^\[\+\] Building \d+\.\ds \(1\/2\)$/);
    expect(last[1]).toMatch(/^ => CACHED \[1\/2\] FROM very-long-re 0\.0s$/); // 39 columns, the time at the edge
    expect(last[2]).toMatch(/^ => \[2\/2\] RUN \.\/build\.sh +\d+\.\ds$/);
    expect(displayWidth(last[2]!)).toBe(39);
  });

  it('shows the running step output while it runs, in the last frame only the steps and the summary', () => {
    const screen = new Screen(80, 30);
    const view = new TtyProgress(screen, { title: 'Building', color: false });
    const at = Date.now();
    view.onProgress({ type: 'step', id: 'r', name: '[1/1] RUN make', status: 'started', at });
    view.onProgress({ type: 'log', id: 'r', stream: 'stdout', data: 'cc -c main.c\n', at });
    view.say('a notice\n');
    view.onProgress({ type: 'step', id: 'r', name: '[1/1] RUN make', status: 'done', at: at + 1500, durationMs: 1500 });
    view.onProgress({ type: 'step', id: 'export', name: 'exporting to image', status: 'started', at: at + 1500 });
    view.onProgress({ type: 'step', id: 'export', name: 'exporting to image', status: 'done', at: at + 1600, durationMs: 100 });
    view.end({ names: ['docker.io/library/app:1'], digest: `sha256:${'ab'.repeat(32)}` });
    expect(screen.text).not.toContain('\x1b[3'); // no colour
    expect(screen.text.replace(OWN, '').split('\n').slice(-6)).toEqual([
      expect.stringMatching(/^\[\+\] Building \d+\.\ds \(2\/2\) FINISHED$/),
      expect.stringMatching(/^ => \[1\/1\] RUN make +1\.5s$/),
      expect.stringMatching(/^ => exporting to image +0\.1s$/),
      ' => => writing image sha256:abababababab',
      ' => => naming to docker.io/library/app:1',
      '',
    ]);
    expect(screen.text).toContain('a notice\n');
  });

  it('shows a download under its step (a pull) or on its own (a base image in a build), with bytes and rate, until it is complete', async () => {
    const screen = new Screen(80, 30);
    const view = new TtyProgress(screen, { title: 'Pulling', color: false });
    const at = Date.now();
    const layer = `sha256:${'1'.repeat(64)}`;
    const base = `sha256:${'2'.repeat(64)}`;
    view.onProgress({ type: 'step', id: layer, name: 'layer 111111111111 (3.4 MB)', status: 'started', at });
    view.onProgress({ type: 'bytes', id: layer, current: 1_200_000, total: 3_400_000, started: at - 2000, at });
    view.onProgress({ type: 'bytes', id: base, current: 500_000, total: 1_000_000, started: at - 1000, at });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const frame = screen.text.replace(OWN, '').split('\n');
    const step = frame.findIndex((l) => l.startsWith(' => layer 111111111111 (3.4 MB)'));
    expect(frame[step + 1]).toMatch(/^ => => 1\.2MB \/ 3\.4MB \d+(\.\d+)?kB\/s$/);
    expect(frame).toContainEqual(expect.stringMatching(/^ => => sha256:222222222222 500kB \/ 1MB \d+(\.\d+)?kB\/s$/));

    view.onProgress({ type: 'bytes', id: layer, current: 3_400_000, total: 3_400_000, started: at - 2000, at });
    view.onProgress({ type: 'step', id: layer, name: 'layer 111111111111 (3.4 MB)', status: 'done', at, durationMs: 2000 });
    const before = screen.text.length;
    view.end();
    expect(screen.text.slice(before)).not.toContain('MB /');
  });
});

// The live progress view as a person sees it: builds run in a real 80x30 terminal (tmux) and the
// screen is read back. A RUN step waits for the test (it polls an HTTP server on 127.0.0.1 that
// answers 200 only once the test has looked), so the running view is captured without guessing
// at timings.

import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILDER_BIN } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { Terminal } from '../helpers/terminal.js';

const fx = useBuildFixture('tty-progress');
const COLUMNS = 80;
const noTmux = spawnSync('tmux', ['-V']).status === 0 ? undefined : 'tmux is not installed';

/** An HTTP server the waiting RUN step polls: 404 until open() is called. */
let gate: { server: Server; port: number; opened: boolean };
let term: Terminal;

beforeAll(async () => {
  const server = createServer((_req, res) => res.writeHead(gate.opened ? 200 : 404).end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  gate = { server, port: (server.address() as AddressInfo).port, opened: false };
});
afterAll(async () => {
  // A build still running (a failed expectation) is stopped as a user would, so it cleans up.
  if (term && !term.screen().some((l) => l.startsWith('EXIT('))) {
    term.interrupt();
    await term.waitFor((lines) => lines.some((l) => l.startsWith('EXIT(')), 'the end of the build').catch(() => undefined);
  }
  term?.close();
  await new Promise((resolve) => gate?.server.close(resolve));
});

/** Whether run `run` has ended: go.sh prints `EXIT(run)=CODE` after the build. */
const exited = (run: string) => (lines: string[]) => lines.some((l) => l.startsWith(`EXIT(${run})=`));
const wide = (lines: string[]) => lines.filter((l) => [...l].length > COLUMNS);

describe.skipIf(noTmux)('--progress auto on a terminal', () => {
  it('shows a live view at 80 columns: running output, then the summary; CACHED on a rebuild; no colours with NO_COLOR; Ctrl-C', async () => {
    const dir = join(fx.work, 'ctx');
    await mkdir(dir, { recursive: true });
    // The RUN line is longer than the terminal is wide: its step line must be cut, not wrapped.
    const wait = `i=0; until wget -q -O /dev/null http://127.0.0.1:${gate.port}/; do i=$((i+1)); [ $i -lt 1200 ] || exit 9; sleep 0.1; done`;
    await writeFile(join(dir, 'Dockerfile'), `FROM ${fx.base}\nRUN echo first line; echo waiting-for-the-test >&2; ${wait}; echo released\nCOPY Dockerfile /copied\n`);
    const name = 'tty/app:1';
    // The command stays short (no wrapped command line on the screen): a script runs the build.
    await writeFile(
      join(fx.work, 'go.sh'),
      `run=$1; shift\ncd ${JSON.stringify(fx.work)}\n${JSON.stringify(BUILDER_BIN)} build --root root --network host -t ${name} "$@" ctx\necho "EXIT($run)=$?"\n`,
    );
    term = await Terminal.start({ columns: COLUMNS, rows: 30 }, { HOME: fx.work });
    term.type(`clear; bash ${fx.work}/go.sh first`);

    // While the RUN waits: the header counts steps, the running step shows its output below it.
    const tail = [' => => # first line', ' => => # waiting-for-the-test'];
    // The two lines come through two pipes (stdout, stderr): in either order.
    const running = await term.waitFor((lines) => tail.every((l) => lines.includes(l)), 'the running step');
    expect(running[0]).toMatch(/^\[\+\] Building \d+\.\d+s \(\d+\/\d+\)$/);
    const step = running.findIndex((l) => l.startsWith(' => [2/3] RUN echo first line; echo waiting-for-the-test >&2; i=0'));
    expect(step, running.join('\n')).toBeGreaterThan(0);
    expect(running[step]).toMatch(/ \d+\.\d+s$/);
    expect(running.slice(step + 1, step + 3).sort()).toEqual(tail);
    expect(wide(running)).toEqual([]);

    gate.opened = true;
    const done = await term.waitFor(exited('first'), 'the end of the build');
    const digest = done.find((l) => /^sha256:[0-9a-f]{64}$/.test(l))!;
    expect(digest, done.join('\n')).toBeDefined();
    expect(done).toContain('EXIT(first)=0');
    const frame = done.slice(0, done.indexOf(digest));
    expect(frame[0]).toMatch(/^\[\+\] Building \d+\.\d+s \((\d+)\/\1\) FINISHED$/);
    expect(frame.slice(1).map((l) => l.replace(/ +\d+\.\d+s$/, ' <time>'))).toEqual([
      expect.stringMatching(/^ => \[1\/3\] FROM 127\.0\.0\.1:\d+\/library\/busybox:latest@sha256:[0-9a-f]+ <time>$/),
      // Cut to fit: the time stays at the right edge.
      expect.stringMatching(/^ => \[2\/3\] RUN echo first line; echo waiting-for-the-test >&2; i=0; [a-z ]* <time>$/),
      ' => [3/3] COPY Dockerfile /copied <time>',
      ' => exporting to image <time>',
      ` => => writing image ${digest.slice(0, 19)}`,
      ` => => naming to docker.io/${name}`,
    ]);
    expect(wide(done)).toEqual([]);
    // Finished steps in colour.
    expect(term.screen({ escapes: true }).join('\n')).toMatch(/\x1b\[[0-9;]*m/);

    // The same build again, with NO_COLOR: every step CACHED, and no escape sequence on the screen.
    term.type(`clear; NO_COLOR=1 bash ${fx.work}/go.sh cached`);
    const cached = await term.waitFor(exited('cached'), 'the end of the cached build');
    expect(cached).toContain('EXIT(cached)=0');
    expect(cached.filter((l) => l.startsWith(' => CACHED ')).map((l) => l.replace(/ +\d+\.\d+s$/, ''))).toEqual([
      expect.stringMatching(/^ => CACHED \[1\/3\] FROM /),
      expect.stringMatching(/^ => CACHED \[2\/3\] RUN echo first line;/),
      ' => CACHED [3/3] COPY Dockerfile /copied',
    ]);
    const again = cached.find((l) => /^sha256:[0-9a-f]{64}$/.test(l))!;
    expect(cached).toContain(` => => writing image ${again.slice(0, 19)}`);
    expect(wide(cached)).toEqual([]);
    expect(term.screen({ escapes: true }).join('\n')).not.toContain('\x1b');

    // Ctrl-C while the step runs: the notice is not painted over, the view ends once, the code is 130.
    gate.opened = false;
    term.type(`clear; bash ${fx.work}/go.sh stopped --no-cache`);
    await term.waitFor((lines) => lines.includes(' => => # waiting-for-the-test'), 'the running step again');
    term.interrupt();
    const stopped = await term.waitFor(exited('stopped'), 'the end of the interrupted build');
    expect(stopped).toContain('EXIT(stopped)=130');
    expect(stopped).toContain('interrupted: stopping the build and cleaning up');
    expect(stopped.filter((l) => l.startsWith('[+] Building'))).toHaveLength(1);
    expect(wide(stopped)).toEqual([]);
  }, 240_000);
});

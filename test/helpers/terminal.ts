// A real pseudo-terminal for tests of what a person sees: a tmux session of a given size, on a
// private tmux server (its own socket, no user configuration), running an interactive bash.
//
//   const term = await Terminal.start({ columns: 80, rows: 30 });
//   term.type('builder build .; echo EXIT=$?');
//   const screen = await term.waitFor((lines) => lines.some((l) => l.startsWith('EXIT=')), 'the exit code');
//   term.close();
//
// screen() returns the visible rows with wrapped lines joined (`capture-pane -J`), so a line that
// was too wide for the terminal shows as one line longer than the width.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export class Terminal {
  private constructor(private readonly socket: string) {}

  static async start(size: { columns: number; rows: number }, env: Record<string, string> = {}): Promise<Terminal> {
    const term = new Terminal(`builder-test-${process.pid}-${randomBytes(4).toString('hex')}`);
    const vars = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
    term.tmux(['-u', '-f', '/dev/null', 'new-session', '-d', '-s', 'test', '-x', String(size.columns), '-y', String(size.rows), ...vars, 'bash --norc --noprofile']);
    await term.waitFor((lines) => lines.length > 0, 'the shell prompt');
    return term;
  }

  /** Types `line` and Enter. */
  type(line: string): void {
    this.tmux(['send-keys', '-t', 'test', '-l', line]);
    this.tmux(['send-keys', '-t', 'test', 'Enter']);
  }

  /** Presses Ctrl-C. */
  interrupt(): void {
    this.tmux(['send-keys', '-t', 'test', 'C-c']);
  }

  /** The visible rows, trailing blanks removed; with `escapes`, with the colours and attributes as SGR sequences. */
  screen(opts: { escapes?: boolean } = {}): string[] {
    const out = this.tmux(['capture-pane', '-p', '-J', ...(opts.escapes ? ['-e'] : []), '-t', 'test']);
    const lines = out.split('\n').map((l) => l.trimEnd());
    while (lines.length > 0 && lines.at(-1) === '') lines.pop();
    return lines;
  }

  /** Polls the screen until `seen` holds (a minute at most); returns that screen. */
  async waitFor(seen: (lines: string[]) => boolean, what: string): Promise<string[]> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const lines = this.screen();
      if (seen(lines)) return lines;
      if (Date.now() > deadline) throw new Error(`the terminal never showed ${what}:\n${lines.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  close(): void {
    spawnSync('tmux', ['-L', this.socket, 'kill-server']);
  }

  private tmux(args: string[]): string {
    const r = spawnSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  }
}

import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CommandError, commandFilter, runShort } from '../../src/util/command.js';

describe('runShort (mount, umount and mknod through one long-lived shell)', () => {
  it('passes arguments through untouched and reports a failure with its exit code and output', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'builder-exec-'));
    try {
      const odd = `a b 'c' "d" $HOME \`x\` ; | * é`;
      await runShort('sh', ['-c', 'printf %s "$1" > "$2"', 'sh', odd, 'out'], { cwd: dir });
      expect(spawnSync('cat', [join(dir, 'out')], { encoding: 'utf8' }).stdout).toBe(odd);

      const err = await runShort('sh', ['-c', 'echo "déjà vu" >&2; exit 3']).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect(err).toMatchObject({ exitCode: 3, stderr: 'déjà vu' });

      const missing = await runShort('no-such-command-here', []).catch((e: unknown) => e);
      expect(missing).toMatchObject({ spawnError: 'ENOENT' });

      // A newline cannot travel over the line protocol: such a command runs the ordinary way.
      await runShort('sh', ['-c', 'printf %s "$1" > "$2"', 'sh', 'two\nlines', join(dir, 'nl')]);
      expect(spawnSync('cat', [join(dir, 'nl')], { encoding: 'utf8' }).stdout).toBe('two\nlines');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('answers concurrent callers each with their own result', async () => {
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => runShort('sh', ['-c', `echo ${i} >&2; exit ${i % 2}`])));
    results.forEach((r, i) => {
      if (i % 2 === 0) expect(r.status).toBe('fulfilled');
      else expect(r).toMatchObject({ status: 'rejected', reason: { exitCode: 1, stderr: String(i) } });
    });
  });

  it('does not keep the process alive once its commands are done', () => {
    // The compiled module (tests run after `npm run build`), in a process of its own.
    const exec = new URL('../../dist/util/command.js', import.meta.url).href;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const { runShort } = await import(${JSON.stringify(exec)}); await runShort('true', []); console.log('done');`], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.error).toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('done\n');
  });
});

describe('commandFilter (a command as a pipeline stage)', () => {
  async function collect(stage: ReturnType<typeof commandFilter>, input: string): Promise<string> {
    const out: Buffer[] = [];
    await pipeline(Readable.from([Buffer.from(input)]), stage, async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) out.push(chunk);
    });
    return Buffer.concat(out).toString();
  }

  it('streams input through the command', async () => {
    expect(await collect(commandFilter('tr', ['a-z', 'A-Z'], { missing: 'needs tr' }), 'hello')).toBe('HELLO');
  });

  it('fails with the exit code and stderr of a failing command, and names a missing one', async () => {
    const failing = commandFilter('sh', ['-c', 'cat >/dev/null; echo broken input >&2; exit 2'], { missing: 'needs sh', label: 'sh -c' });
    await expect(collect(failing, 'x')).rejects.toThrow('sh -c failed (exit 2): broken input');
    const missing = commandFilter('no-such-command-here', [], { missing: 'this step needs no-such-command-here' });
    await expect(collect(missing, 'x')).rejects.toThrow(/^this step needs no-such-command-here: .*ENOENT/);
  });

  it('kills the command when the pipeline is abandoned', async () => {
    const stage = commandFilter('sh', ['-c', 'echo $$; exec sleep 30'], { missing: 'needs sh' });
    const pid = await new Promise<number>((resolve) => stage.once('data', (d: Buffer) => resolve(Number(d.toString().split('\n')[0]))));
    stage.on('error', () => undefined);
    stage.destroy(new Error('abandoned'));
    await expect.poll(() => {
      try {
        process.kill(pid, 0);
        return 'running';
      } catch {
        return 'gone';
      }
    }, { timeout: 5000 }).toBe('gone');
  });
});

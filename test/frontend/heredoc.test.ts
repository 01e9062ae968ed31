// Heredocs: the parser (markers, terminators, <<- tab stripping, quoting) and how RUN, COPY and
// ADD compile them, as BuildKit does.
import { describe, expect, it } from 'vitest';
import type { CopyAction, MkfileAction } from '../../src/definition/index.js';
import { DockerfileError, parseDockerfile } from '../../src/frontend/index.js';
import { chompHeredoc, parseHeredocMarker } from '../../src/frontend/parser.js';
import { build, execs, fileOps, rejection, vertexAt } from './helpers.js';

describe('heredoc parsing', () => {
  it('reads the body up to the terminator and extends the instruction range', () => {
    const df = parseDockerfile('FROM a\nRUN <<EOF\necho hi\necho there\nEOF\nRUN true\n');
    const run = df.instructions[1]!;
    expect(run.startLine).toBe(2);
    expect(run.endLine).toBe(5);
    expect(run.heredocs).toEqual([{ name: 'EOF', content: 'echo hi\necho there\n', expand: true, chomp: false, fileDescriptor: 0, startLine: 3, endLine: 4 }]);
    expect(df.instructions[2]!.startLine).toBe(6);
  });

  it('reads several heredocs on one line in order', () => {
    const df = parseDockerfile('FROM a\nCOPY <<a.txt <<b.txt /dir/\nA\na.txt\nB\nb.txt\n');
    expect(df.instructions[1]!.heredocs!.map((h) => [h.name, h.content])).toEqual([
      ['a.txt', 'A\n'],
      ['b.txt', 'B\n'],
    ]);
  });

  it('<<- strips leading tabs from the terminator (the body is stripped when used)', () => {
    const df = parseDockerfile('FROM a\nRUN <<-EOT\n\t\techo x\n\tEOT\n');
    const h = df.instructions[1]!.heredocs![0]!;
    expect(h).toMatchObject({ chomp: true, content: '\t\techo x\n' });
    expect(chompHeredoc(h.content)).toBe('echo x\n');
  });

  it('a quoted delimiter turns expansion off', () => {
    expect(parseHeredocMarker('<<EOF')).toMatchObject({ name: 'EOF', expand: true });
    expect(parseHeredocMarker("<<'EOF'")).toMatchObject({ name: 'EOF', expand: false });
    expect(parseHeredocMarker('<<"EOF"')).toMatchObject({ name: 'EOF', expand: false });
    expect(parseHeredocMarker('<<E"O"F')).toMatchObject({ name: 'EOF', expand: false });
    expect(parseHeredocMarker('3<<-EOF')).toMatchObject({ name: 'EOF', chomp: true, fileDescriptor: 3 });
    expect(parseHeredocMarker('<<')).toBeUndefined();
    expect(parseHeredocMarker('cat<<EOF')).toBeUndefined();
  });

  it('blanks may follow << (BuildKit since 2025); << -EOF names "-EOF"', () => {
    const heredocs = (text: string) => parseDockerfile(`FROM a\n${text}`).instructions[1]!.heredocs;
    expect(heredocs('RUN <<  EOF\necho hi\nEOF\n')).toEqual([
      { name: 'EOF', content: 'echo hi\n', expand: true, chomp: false, fileDescriptor: 0, startLine: 3, endLine: 3 },
    ]);
    expect(heredocs('RUN <<  EOF  > foo\nx\nEOF\n')).toMatchObject([{ name: 'EOF', content: 'x\n' }]);
    expect(heredocs('RUN << -EOF\nx\n-EOF\n')).toMatchObject([{ name: '-EOF', chomp: false, content: 'x\n' }]);
    // As in BuildKit, only blanks right after << join the marker: `<<- EOF` is two words, no heredoc.
    expect(heredocs('RUN <<- EOF\n')).toBeUndefined();
    expect(heredocs("RUN << 'EOF'\n$x\nEOF\n")).toMatchObject([{ name: 'EOF', expand: false }]);
    expect(heredocs('COPY <<\ta.txt << "b.txt" /dir/\nA\na.txt\nB\nb.txt\n')).toMatchObject([
      { name: 'a.txt', expand: true },
      { name: 'b.txt', expand: false },
    ]);
    expect(parseHeredocMarker('<< EOF')).toMatchObject({ name: 'EOF', chomp: false });
    expect(parseHeredocMarker('<< EOF sh')).toBeUndefined();
  });

  it('ignores << inside quotes, in JSON form and in other instructions', () => {
    const df = parseDockerfile('FROM a\nRUN echo "<<EOF"\nRUN ["sh", "-c", "cat <<EOF"]\nLABEL a=<<EOF\n');
    expect(df.instructions.map((i) => i.heredocs)).toEqual([undefined, undefined, undefined, undefined]);
  });

  it('an unterminated heredoc is an error naming the line', () => {
    const err = (() => {
      try {
        parseDockerfile('FROM a\nRUN <<EOF\necho hi\n');
      } catch (e) {
        return e as DockerfileError;
      }
      throw new Error('no error');
    })();
    expect(err).toBeInstanceOf(DockerfileError);
    expect(err.line).toBe(2);
    expect(err.message).toMatch(/Dockerfile:2: unterminated heredoc/);
    expect(err.format()).toContain('RUN <<EOF');
  });

  it('a file without a final newline still ends the heredoc at its terminator', () => {
    const df = parseDockerfile('FROM a\nRUN <<EOF\necho hi\nEOF');
    expect(df.instructions[1]!.heredocs![0]!.content).toBe('echo hi\n');
  });
});

describe('RUN with heredocs', () => {
  it('RUN <<EOF runs the body as the shell script', async () => {
    const r = await build('FROM alpine\nRUN <<EOF\nset -e\necho hi\nEOF\n');
    const [run] = execs(r.definition);
    expect(run!.args).toEqual(['/bin/sh', '-c', 'set -e\necho hi\n']);
    expect(run!.scripts).toBeUndefined();
    expect(vertexAt(r, 2).meta.name).toBe('[2/2] RUN <<EOF (set -e...)');
  });

  it('RUN <<  EOF runs the body as the shell script too', async () => {
    const r = await build('FROM alpine\nRUN <<  EOF\necho hi\nEOF\n');
    expect(execs(r.definition)[0]!.args).toEqual(['/bin/sh', '-c', 'echo hi\n']);
  });

  it('RUN <<-EOF strips leading tabs', async () => {
    const r = await build('FROM alpine\nRUN <<-EOF\n\techo hi\n\tEOF\n');
    expect(execs(r.definition)[0]!.args).toEqual(['/bin/sh', '-c', 'echo hi\n']);
  });

  it('a heredoc with a shebang becomes a script file that only exists while the step runs', async () => {
    const r = await build('FROM alpine\nRUN <<EOF\n#!/usr/bin/env python3\nprint("hi")\nEOF\n');
    const [run] = execs(r.definition);
    expect(run!.scripts).toEqual([{ path: '/.builder-heredoc/EOF', data: '#!/usr/bin/env python3\nprint("hi")\n', mode: 0o755 }]);
    expect(run!.args).toEqual(['/bin/sh', '-c', '/.builder-heredoc/EOF']);
  });

  it('uses the SHELL for the script', async () => {
    const r = await build('FROM alpine\nSHELL ["/bin/bash", "-eux", "-c"]\nRUN <<EOF\necho $0\nEOF\n');
    expect(execs(r.definition)[0]!.args).toEqual(['/bin/bash', '-eux', '-c', 'echo $0\n']);
  });

  it('other uses hand the heredocs to the shell, unexpanded', async () => {
    const r = await build("FROM alpine\nRUN cat <<A > /a && cat <<'B' > /b\n$HOME\nA\n$PATH\nB\n");
    expect(execs(r.definition)[0]!.args).toEqual(['/bin/sh', '-c', "cat <<A > /a && cat <<'B' > /b\n$HOME\nA\n$PATH\nB"]);
  });

  it('the heredoc body is part of the vertex digest (cache key)', async () => {
    const a = await build('FROM alpine\nRUN <<EOF\necho 1\nEOF\n');
    const b = await build('FROM alpine\nRUN <<EOF\necho 2\nEOF\n');
    expect(a.root).not.toBe(b.root);
  });
});

describe('COPY with heredocs', () => {
  it('COPY <<EOF /dest creates the file with the (expanded) content, mode 0644', async () => {
    const r = await build('FROM alpine\nENV NAME=world\nCOPY <<EOF /etc/greeting\nhello "$NAME"\nEOF\n');
    const mk = fileOps(r.definition).flatMap((op) => op.actions).find((a): a is MkfileAction => a.action === 'mkfile');
    expect(mk).toEqual({ action: 'mkfile', path: '/EOF', data: 'hello "world"\n', mode: 0o644 });
    const copy = fileOps(r.definition).flatMap((op) => op.actions).find((a): a is CopyAction => a.action === 'copy');
    expect(copy).toEqual({ action: 'copy', sourceInput: 1, src: ['EOF'], dest: '/etc/greeting' });
    expect(r.image.history.at(-1)!.created_by).toBe('COPY <<EOF /etc/greeting # buildkit');
  });

  it('a quoted delimiter keeps $VARS as written', async () => {
    const r = await build("FROM alpine\nENV NAME=world\nCOPY <<'EOF' /greeting\nhello $NAME\nEOF\n");
    const mk = fileOps(r.definition).flatMap((op) => op.actions).find((a): a is MkfileAction => a.action === 'mkfile');
    expect(mk!.data).toBe('hello $NAME\n');
  });

  it('COPY <<a.txt <<b.txt /dir/ makes two files, with --chmod and --chown applied to the copies', async () => {
    const r = await build('FROM alpine\nCOPY --chmod=0755 --chown=1:2 <<a.txt <<b.txt /dir/\nA\na.txt\nB\nb.txt\n');
    const root = r.definition.vertices.get(r.root)!;
    expect(root.inputs).toHaveLength(3);
    expect(root.op).toEqual({
      type: 'file',
      actions: [
        { action: 'copy', sourceInput: 1, src: ['a.txt'], dest: '/dir/', chmod: 0o755, chown: { user: '1', group: '2' } },
        { action: 'copy', sourceInput: 2, src: ['b.txt'], dest: '/dir/', chmod: 0o755, chown: { user: '1', group: '2' } },
      ],
    });
  });

  it('mixes context files and heredocs', async () => {
    const r = await build('FROM alpine\nCOPY app.js <<cfg.json /srv/\n{}\ncfg.json\n');
    const root = r.definition.vertices.get(r.root)!;
    expect((root.op as { actions: CopyAction[] }).actions.map((a) => [a.sourceInput, a.src])).toEqual([
      [1, ['app.js']],
      [2, ['cfg.json']],
    ]);
  });

  it('several heredoc sources need a directory destination', async () => {
    const err = await rejection(build('FROM alpine\nCOPY <<a <<b /dir\nA\na\nB\nb\n'));
    expect(err.message).toMatch(/Dockerfile:2: COPY with more than one source needs a directory destination/);
  });

  it('a heredoc cannot be the destination', async () => {
    const err = await rejection(build('FROM alpine\nCOPY foo <<EOF\nx\nEOF\n'));
    expect(err.message).toMatch(/Dockerfile:2: COPY cannot accept a heredoc as a destination/);
  });
});

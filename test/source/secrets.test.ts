import { mkdtemp, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_SECRET_BYTES, parseSecretFlag, Secrets } from '../../src/source/secrets.js';

describe('parseSecretFlag (docker buildx --secret)', () => {
  it('reads a file secret, with src or source, keys in any case, quoted fields', () => {
    expect(parseSecretFlag('id=npmrc,src=/home/me/.npmrc')).toEqual({ id: 'npmrc', src: '/home/me/.npmrc' });
    expect(parseSecretFlag('type=file,id=npmrc,source=.npmrc')).toEqual({ id: 'npmrc', src: '.npmrc' });
    expect(parseSecretFlag('ID=k,SRC=key')).toEqual({ id: 'k', src: 'key' });
    expect(parseSecretFlag('id=k,"src=my,key.pem"')).toEqual({ id: 'k', src: 'my,key.pem' });
  });

  it('reads an env secret: env=, or type=env with the name in src; env wins over src', () => {
    expect(parseSecretFlag('id=token,env=GH_TOKEN')).toEqual({ id: 'token', env: 'GH_TOKEN' });
    expect(parseSecretFlag('id=token,type=env,src=GH_TOKEN')).toEqual({ id: 'token', env: 'GH_TOKEN' });
    expect(parseSecretFlag('id=token,src=file,env=GH_TOKEN')).toEqual({ id: 'token', env: 'GH_TOKEN' });
    expect(parseSecretFlag('id=token,type=file,env=GH_TOKEN')).toEqual({ id: 'token', env: 'GH_TOKEN' });
  });

  it('with an id alone: the environment variable of that name if set, else the file of that name', () => {
    expect(parseSecretFlag('id=GH_TOKEN', { GH_TOKEN: '' })).toEqual({ id: 'GH_TOKEN', env: 'GH_TOKEN' });
    expect(parseSecretFlag('id=GH_TOKEN', {})).toEqual({ id: 'GH_TOKEN', src: 'GH_TOKEN' });
    expect(parseSecretFlag('id=x,src=', {})).toEqual({ id: 'x', src: 'x' });
  });

  it('refuses what buildx refuses, saying which flag and what is wrong', () => {
    const bad: Array<[string, string]> = [
      ['src=.npmrc', 'invalid --secret "src=.npmrc": the secret has no id (id=…)'],
      ['id=,src=.npmrc', 'invalid --secret "id=,src=.npmrc": the secret has no id (id=…)'],
      ['id=a,foo=bar', 'invalid --secret "id=a,foo=bar": unexpected key "foo" in "foo=bar" (use id, src, env or type)'],
      ['id=a,type=ssh', 'invalid --secret "id=a,type=ssh": unsupported secret type "ssh" (use file or env)'],
      ['id=a,src', 'invalid --secret "id=a,src": the field "src" must be a key=value pair'],
      ['id=a,"src=b', 'invalid --secret "id=a,"src=b": unterminated quote in field 2'],
      ['id=a,src=a"b', 'invalid --secret "id=a,src=a"b": stray quote in field 2 "src=a"b" (quote the whole field)'],
      ['', 'invalid --secret "": the secret has no id (id=…)'],
    ];
    for (const [flag, message] of bad) expect(() => parseSecretFlag(flag, {}), flag).toThrow(message);
  });
});

describe('Secrets', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'builder-secrets-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives each secret by id from a file, an environment variable or a value; nothing for an unknown id', async () => {
    await writeFile(join(dir, 'npmrc'), '//registry/:_authToken=abc\n');
    const secrets = await Secrets.open(
      [
        { id: 'npmrc', src: join(dir, 'npmrc') },
        { id: 'token', env: 'GH_TOKEN' },
        { id: 'text', value: 'plain' },
        { id: 'bytes', value: new Uint8Array([0, 1, 255]) },
      ],
      { GH_TOKEN: 'ghp_123' },
    );
    expect((await secrets.get('npmrc'))?.toString()).toBe('//registry/:_authToken=abc\n');
    expect((await secrets.get('token'))?.toString()).toBe('ghp_123');
    expect((await secrets.get('text'))?.toString()).toBe('plain');
    expect(await secrets.get('bytes')).toEqual(Buffer.from([0, 1, 255]));
    expect(await secrets.get('other')).toBeUndefined();
  });

  it('reads once when opened: later changes to the file or to a returned buffer change nothing', async () => {
    const file = join(dir, 'once');
    await writeFile(file, 'first');
    const secrets = await Secrets.open([{ id: 's', src: file }]);
    await writeFile(file, 'second');
    (await secrets.get('s'))?.fill(0);
    expect((await secrets.get('s'))?.toString()).toBe('first');
  });

  it('has an empty secret for an environment variable that is not set (as BuildKit, which reads os.Getenv)', async () => {
    const secrets = await Secrets.open([{ id: 'token', env: 'UNSET_VAR' }], {});
    expect(await secrets.get('token')).toEqual(Buffer.alloc(0));
  });

  it('takes the last of two secrets with one id (as buildx)', async () => {
    const secrets = await Secrets.open([{ id: 'a', value: 'one' }, { id: 'b', value: 'b' }, { id: 'a', value: 'two' }]);
    expect((await secrets.get('a'))?.toString()).toBe('two');
    expect(secrets.ids()).toEqual(['b', 'a']);
  });

  it('fails before the build for a source that cannot be used, naming the secret and the path', async () => {
    const missing = join(dir, 'missing');
    await expect(Secrets.open([{ id: 'npmrc', src: missing }])).rejects.toThrow(`secret "npmrc": cannot read ${missing}: no such file`);
    await expect(Secrets.open([{ id: 'd', src: dir }])).rejects.toThrow(`secret "d": cannot read ${dir}: not a regular file: it is a directory`);
    const socket = join(dir, 'socket');
    const server = createServer().listen(socket);
    await once(server, 'listening');
    try {
      await expect(Secrets.open([{ id: 's', src: socket }])).rejects.toThrow(`secret "s": cannot read ${socket}: not a regular file: it is a socket`);
    } finally {
      server.close();
    }
    const loop = join(dir, 'loop');
    await symlink(loop, loop);
    await expect(Secrets.open([{ id: 'l', src: loop }])).rejects.toThrow(`secret "l": cannot read ${loop}: too many levels of symbolic links`);
    await expect(Secrets.open([{ id: '', value: 'x' }])).rejects.toThrow('a secret has no id');
  });

  it('reads a pipe to its end, as Docker reads --secret src=<(command)', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const writer = spawn('sh', ['-c', `printf 'from a pipe' > ${fifo}`]);
    const exited = once(writer, 'exit');
    const secrets = await Secrets.open([{ id: 'p', src: fifo }]);
    expect((await secrets.get('p'))?.toString()).toBe('from a pipe');
    await exited;
    // Bounded like a file: a pipe that does not end at the limit is refused.
    const endless = spawn('sh', ['-c', `yes > ${fifo}`]);
    await expect(Secrets.open([{ id: 'p', src: fifo }])).rejects.toThrow(`secret "p": cannot read ${fifo}: it is larger than ${MAX_SECRET_BYTES / 1024} KiB`);
    endless.kill();
  });

  it('refuses an unreadable file, naming it without showing what it holds', async () => {
    const file = join(dir, 'private');
    await writeFile(file, 'do-not-show');
    await chmod(file, 0o600);
    // root reads any file: read it as another user (this test file runs in a process of its own).
    const asRoot = process.geteuid?.() === 0;
    if (asRoot) process.seteuid?.(65534);
    try {
      const err = await Secrets.open([{ id: 'p', src: file }]).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toBe(`secret "p": cannot read ${file}: permission denied`);
    } finally {
      if (asRoot) process.seteuid?.(0);
    }
  });

  it('refuses a secret over BuildKit\'s 500 KiB, from any source, and takes one of exactly that size', async () => {
    const big = join(dir, 'big');
    await writeFile(big, Buffer.alloc(MAX_SECRET_BYTES + 1, 'a'));
    await expect(Secrets.open([{ id: 'big', src: big }])).rejects.toThrow(`secret "big": cannot read ${big}: it is larger than 500 KiB`);
    await expect(Secrets.open([{ id: 'e', env: 'BIG' }], { BIG: 'a'.repeat(MAX_SECRET_BYTES + 1) })).rejects.toThrow(
      'secret "e" is larger than 500 KiB, the largest a build can use',
    );
    await writeFile(big, Buffer.alloc(MAX_SECRET_BYTES, 'a'));
    expect((await (await Secrets.open([{ id: 'big', src: big }])).get('big'))?.length).toBe(MAX_SECRET_BYTES);
  });

  it('shows ids only when printed, logged as JSON or inspected', async () => {
    const value = 'sup3r-s3cret-value';
    const secrets = await Secrets.open([{ id: 'token', value }, { id: 'npmrc', env: 'NPMRC' }], { NPMRC: value });
    const shown = [JSON.stringify({ options: { secrets } }), inspect(secrets, { showHidden: true, depth: 10 }), `${secrets}`, inspect({ secrets })];
    for (const text of shown) {
      expect(text).toContain('token');
      expect(text).not.toContain(value);
    }
    expect(JSON.parse(shown[0] as string)).toEqual({ options: { secrets: { secrets: ['token', 'npmrc'] } } });
    expect(Object.keys(secrets)).toEqual([]);
  });
});

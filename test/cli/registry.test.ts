// The registry as a user meets it on the command line: `builder login` / `builder logout` write
// the file docker and skopeo read, and `builder build --push` to a token-auth registry mounts the
// base image's layers from their repository instead of uploading them again.

import { execFile, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILDER_BIN } from '../helpers/cli.js';
import { hostArchitecture, pushBusyboxImage } from '../helpers/base-image.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { RegistryClient, parseReference } from '../../src/registry/index.js';

const run = promisify(execFile);
const USER = 'builder';
const PASSWORD = 'pa55 word:with colon';

let work: string;
let basic: RunningRegistry;
let token: RunningRegistry;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'builder-registry-cli-'));
  [basic, token] = await Promise.all([
    startRegistry({ htpasswd: { user: USER, password: PASSWORD } }),
    startRegistry({ token: { users: { [USER]: PASSWORD }, anonymousPull: false } }),
  ]);
  await Promise.all([
    pushBusyboxImage(basic.host, 'library/busybox', 'latest', { creds: { user: USER, password: PASSWORD } }),
    pushBusyboxImage(token.host, 'library/busybox', 'latest', { creds: { user: USER, password: PASSWORD } }),
  ]);
});

afterAll(async () => {
  await basic?.stop();
  await token?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function builder(args: string[], env: NodeJS.ProcessEnv, stdin = ''): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(BUILDER_BIN, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

async function configDir(config?: unknown): Promise<string> {
  const dir = await mkdtemp(join(work, 'docker-'));
  if (config !== undefined) await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

async function readConfig(dir: string): Promise<{ auths?: Record<string, { auth?: string }>; [k: string]: unknown }> {
  return JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('builder login / logout', () => {
  it('checks the password with the registry, then writes auths as docker does (0600, other keys kept)', async () => {
    const dir = await configDir({ auths: { 'other.example.com': { auth: b64('a:b') } }, psFormat: 'table {{.ID}}' });

    const wrong = await builder(['login', '-u', USER, '--password-stdin', basic.host], { DOCKER_CONFIG: dir }, 'nope\n');
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain(`authentication failed for ${basic.host}: 401 Unauthorized`);
    expect(wrong.stderr).not.toContain('nope');
    expect((await readConfig(dir)).auths).toEqual({ 'other.example.com': { auth: b64('a:b') } });

    const ok = await builder(['login', '-u', USER, '--password-stdin', basic.host], { DOCKER_CONFIG: dir }, `${PASSWORD}\n`);
    expect(ok.stderr).toBe(`credentials saved in ${join(dir, 'config.json')}\n`);
    expect(ok.stdout).toBe('Login Succeeded\n');
    expect(ok.code).toBe(0);
    const config = await readConfig(dir);
    expect(config).toEqual({
      auths: { 'other.example.com': { auth: b64('a:b') }, [basic.host]: { auth: b64(`${USER}:${PASSWORD}`) } },
      psFormat: 'table {{.ID}}',
    });
    expect((await stat(join(dir, 'config.json'))).mode & 0o777).toBe(0o600);

    // An independent reader of the format: skopeo with the file as its authfile.
    const inspected = await run('skopeo', ['inspect', '--tls-verify=false', '--authfile', join(dir, 'config.json'), `docker://${basic.host}/library/busybox:latest`]);
    expect(JSON.parse(inspected.stdout).Architecture).toBe(hostArchitecture());

    const out = await builder(['logout', basic.host], { DOCKER_CONFIG: dir });
    expect(out.stdout).toBe(`Removing login credentials for ${basic.host}\n`);
    expect((await readConfig(dir)).auths).toEqual({ 'other.example.com': { auth: b64('a:b') } });
    expect((await builder(['logout', basic.host], { DOCKER_CONFIG: dir })).stdout).toBe(`Not logged in to ${basic.host}\n`);
  });

  it('logs in through a Bearer token server, and refuses bad arguments with a usage error', async () => {
    const dir = await configDir();
    const ok = await builder(['login', '--username', USER, '--password-stdin', `http://${token.host}/v2/`], { DOCKER_CONFIG: dir }, PASSWORD);
    expect(ok.code).toBe(0);
    expect((await readConfig(dir)).auths).toEqual({ [token.host]: { auth: b64(`${USER}:${PASSWORD}`) } });
    expect(token.tokenRequests.at(-1)).toEqual({ user: USER, scopes: [], status: 200 });

    const bad = await builder(['login', '-u', USER, '--password-stdin', token.host], { DOCKER_CONFIG: dir }, 'wrong');
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain(`authentication failed for ${token.host}: 401`);

    const noUser = await builder(['login', '--password-stdin', token.host], { DOCKER_CONFIG: dir }, PASSWORD);
    expect(noUser.code).toBe(2);
    expect(noUser.stderr).toContain('must provide --username with --password-stdin');
  });

  it('stores and erases through the credsStore helper, and pulls with what it stored', async () => {
    const bin = join(work, 'helper-bin');
    const vault = join(work, 'vault');
    await mkdir(bin, { recursive: true });
    await mkdir(vault, { recursive: true });
    // A file-backed helper speaking the docker-credential protocol (store / get / erase).
    const helper = join(bin, 'docker-credential-filevault');
    await writeFile(
      helper,
      `#!/bin/sh

V=${vault}
case "$1" in
  store) cat > "$V/in.json"; echo store >> "$V/log";
         server=$(sed -n 's/.*"ServerURL":"\\([^"]*\\)".*/\\1/p' "$V/in.json"); cp "$V/in.json" "$V/$(echo "$server" | tr '/:' '__')" ;;
  get) read server || true; f="$V/$(echo "$server" | tr '/:' '__')"; echo "get $server" >> "$V/log";
       if [ -f "$f" ]; then sed 's/"Secret"/"Secret"/' "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) read server || true; echo "erase $server" >> "$V/log"; rm -f "$V/$(echo "$server" | tr '/:' '__')" ;;
  *) exit 2 ;;
esac
`,
    );
    await chmod(helper, 0o755);
    const env = { DOCKER_CONFIG: await configDir({ credsStore: 'filevault' }), PATH: `${bin}:${process.env.PATH ?? ''}` };

    const ok = await builder(['login', '-u', USER, '--password-stdin', basic.host], env, PASSWORD);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toBe('credentials stored in docker-credential-filevault\n');
    expect(await readConfig(env.DOCKER_CONFIG)).toEqual({ credsStore: 'filevault', auths: { [basic.host]: {} } });
    expect(JSON.parse(await readFile(join(vault, 'in.json'), 'utf8'))).toEqual({ ServerURL: basic.host, Username: USER, Secret: PASSWORD });

    // A client with default options finds the credentials through the helper.
    const saved = { DOCKER_CONFIG: process.env.DOCKER_CONFIG, PATH: process.env.PATH };
    Object.assign(process.env, env);
    const client = new RegistryClient();
    try {
      const image = await client.resolve(parseReference(`${basic.host}/library/busybox:latest`), { os: 'linux', architecture: hostArchitecture() });
      expect(image.manifest.layers).toHaveLength(1);
    } finally {
      await client.close();
      process.env.PATH = saved.PATH;
      if (saved.DOCKER_CONFIG === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved.DOCKER_CONFIG;
    }

    const out = await builder(['logout', basic.host], env);
    expect(out.code).toBe(0);
    expect((await readFile(join(vault, 'log'), 'utf8')).split('\n')).toContain(`erase ${basic.host}`);
    expect(await readConfig(env.DOCKER_CONFIG)).toEqual({ credsStore: 'filevault', auths: {} });
  });
});

describe('builder build --push to a token-auth registry', () => {
  it('pulls the base with the saved login, pushes every tag, and mounts the base layer instead of uploading it', async () => {
    const dockerConfig = await configDir();
    const login = await builder(['login', '-u', USER, '--password-stdin', token.host], { DOCKER_CONFIG: dockerConfig }, PASSWORD);
    expect(login.code).toBe(0);

    const ctx = join(work, 'ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'hello.txt'), 'hello from builder\n');
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${token.host}/library/busybox:latest\nCOPY hello.txt /hello.txt\n`);
    const root = join(work, 'root');
    const tags = [`${token.host}/team/app:1`, `${token.host}/team/other:2`];
    const r = await builder(
      ['build', '--root', root, '--progress', 'plain', '-t', tags[0]!, '-t', tags[1]!, '--push', ctx],
      { DOCKER_CONFIG: dockerConfig },
    );
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code).toBe(0);
    const digests = tags.map((t) => new RegExp(`pushed ${t.replace(/[.]/g, '\\.')}@(sha256:[a-f0-9]{64})`).exec(r.stdout)?.[1]);
    expect(digests[0]).toMatch(/^sha256:/);
    expect(digests[1]).toBe(digests[0]);

    const base = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', `${USER}:${PASSWORD}`, `docker://${token.host}/library/busybox:latest`]);
    const baseLayer = (JSON.parse(base.stdout) as { Layers: string[] }).Layers[0]!;
    const pushed = await run('skopeo', ['inspect', '--tls-verify=false', '--authfile', join(dockerConfig, 'config.json'), `docker://${tags[0]}`]);
    const info = JSON.parse(pushed.stdout) as { Digest: string; Layers: string[] };
    expect(info.Digest).toBe(digests[0]);
    expect(info.Layers[0]).toBe(baseLayer);
    expect(info.Layers).toHaveLength(2);

    const log = await readFile(token.logPath, 'utf8');
    const enc = encodeURIComponent(baseLayer);
    // The base layer was mounted from library/busybox (201 Created) and never uploaded to team/app;
    // the second tag's blobs all came from team/app the same way.
    expect(log).toMatch(new RegExp(`"POST /v2/team/app/blobs/uploads/\\?mount=${enc}&from=library%2Fbusybox HTTP/1.1" 201`));
    expect(log).not.toMatch(new RegExp(`"PUT /v2/team/app/blobs/uploads/[^"]*digest=${enc}`));
    expect(log).toMatch(new RegExp(`"POST /v2/team/other/blobs/uploads/\\?mount=${encodeURIComponent(info.Layers[1]!)}&from=team%2Fapp HTTP/1.1" 201`));
    expect(log).not.toMatch(/"PUT \/v2\/team\/other\/blobs\/uploads\//);
    // The token server was asked for push on the target and pull on the mount source.
    expect(token.tokenRequests).toContainEqual({ user: USER, scopes: ['repository:library/busybox:pull', 'repository:team/app:pull,push'], status: 200 });
  });
});

describe('builder pull', () => {
  it('pulls into the local store under its name, pinned on stdout; a second pull only asks what the tag names now', async () => {
    const dockerConfig = await configDir({ auths: { [basic.host]: { auth: b64(`${USER}:${PASSWORD}`) } } });
    const root = join(work, 'pull-root');
    const name = `${basic.host}/library/busybox:latest`;
    const remote = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', `${USER}:${PASSWORD}`, `docker://${name}`]);
    const { Digest: digest, Layers: layers } = JSON.parse(remote.stdout) as { Digest: string; Layers: string[] };

    const first = await builder(['pull', '--root', root, `${basic.host}/library/busybox`], { DOCKER_CONFIG: dockerConfig });
    expect(first.stderr).not.toContain('ERROR');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`${name}@${digest}\n`);
    for (const layer of layers) expect(first.stderr).toContain(`layer ${layer.slice(7, 19)}`);
    expect(first.stderr).toMatch(/#1 DONE \d/);
    // The state directory is an OCI layout: skopeo reads the pulled image from it by name.
    const local = await run('skopeo', ['inspect', `oci:${root}:${name}`]);
    expect((JSON.parse(local.stdout) as { Layers: string[] }).Layers).toEqual(layers);

    const before = (await readFile(basic.logPath, 'utf8')).length;
    const again = await builder(['pull', '--root', root, name], { DOCKER_CONFIG: dockerConfig });
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(`${name}@${digest}\n`);
    expect(again.stderr.match(/CACHED/g)).toHaveLength(layers.length);
    const requests = (await readFile(basic.logPath, 'utf8')).slice(before);
    expect(requests).toMatch(/"HEAD \/v2\/library\/busybox\/manifests\/latest HTTP\/1.1" 200/);
    expect(requests).not.toMatch(/"GET \/v2\/library\/busybox\/(manifests|blobs)\//);

    // A build from the pulled name uses the local copy without asking the registry (as docker build does).
    const ctx = join(work, 'pull-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${basic.host}/library/busybox\nCOPY Dockerfile /\n`);
    const mark = (await readFile(basic.logPath, 'utf8')).length;
    const built = await builder(['build', '--root', root, '--progress', 'plain', ctx], { DOCKER_CONFIG: await configDir() });
    expect(built.stderr).not.toContain('ERROR');
    expect(built.code).toBe(0);
    expect((await readFile(basic.logPath, 'utf8')).slice(mark)).not.toContain('/v2/library/busybox/');
  });

  it('names what is wrong: a missing tag, a bad reference, a missing argument', async () => {
    const dockerConfig = await configDir({ auths: { [basic.host]: { auth: b64(`${USER}:${PASSWORD}`) } } });
    const root = join(work, 'pull-errors');
    const missing = await builder(['pull', '--root', root, `${basic.host}/library/busybox:nope`], { DOCKER_CONFIG: dockerConfig });
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain(`not found: ${basic.host}/library/busybox:nope`);
    expect(missing.stdout).toBe('');

    const bad = await builder(['pull', '--root', root, 'Busybox'], {});
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('"Busybox"');
    expect(bad.stderr).toContain('must be lowercase');

    const none = await builder(['pull', '--root', root], {});
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('"builder pull" requires exactly 1 argument');
  });
});

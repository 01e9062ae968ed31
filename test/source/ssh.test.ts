// The build's SSH agents against OpenSSH's own tools: a real ssh-agent forwarded read-only, and
// key files served by builder's in-process agent, checked with ssh-add (listing) and
// ssh-keygen -Y sign / -Y verify (signing through the agent).

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RuncExecutor, type AgentConnector } from '../../src/executor/runc.js';
import { parseSshFlag, SshAgents } from '../../src/source/ssh.js';
import { sshAddLayout } from '../helpers/ssh-image.js';

let dir: string;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'builder-ssh-'));
});
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await rm(dir, { recursive: true, force: true });
});

interface Tool {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs an OpenSSH tool with SSH_AUTH_SOCK set (or unset) and no terminal to prompt on. */
function tool(command: string, args: string[], sock?: string): Promise<Tool> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  if (sock) env.SSH_AUTH_SOCK = sock;
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { env, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') reject(err);
      else resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
    child.stdin?.end();
  });
}

async function ok(command: string, args: string[], sock?: string): Promise<string> {
  const r = await tool(command, args, sock);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

let keyCount = 0;

/** A throwaway key pair; returns the private key path (public key: path + '.pub'). */
async function keygen(type: 'ed25519' | 'rsa' | 'ecdsa', passphrase = ''): Promise<string> {
  const path = join(dir, `key${++keyCount}-${type}`);
  await ok('ssh-keygen', ['-q', '-t', type, '-N', passphrase, '-C', `test-${type}`, '-f', path]);
  return path;
}

/** The SHA256 fingerprint ssh-add -l prints for a key. */
async function fingerprint(key: string): Promise<string> {
  return (await ok('ssh-keygen', ['-l', '-f', `${key}.pub`])).split(' ')[1]!;
}

let agentCount = 0;

/** A real ssh-agent on a socket of its own; stopped (SIGKILL) by the returned kill. */
async function startAgent(): Promise<{ sock: string; kill(): Promise<void> }> {
  const sock = join(dir, `agent${++agentCount}.sock`);
  const child: ChildProcess = spawn('ssh-agent', ['-D', '-a', sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  // -D prints the variables to export once the socket listens.
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.stdout!.once('data', () => resolve());
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  cleanups.push(kill);
  return { sock, kill };
}

let serveCount = 0;

/** A socket where every connection is forwarded to `agent`, as a step's ssh mount does. */
async function serve(agent: AgentConnector, sock = join(dir, `served${++serveCount}.sock`)): Promise<string> {
  const server: Server = createServer((conn) => {
    const upstream = agent.connect();
    upstream.on('error', () => conn.destroy());
    conn.on('error', () => upstream.destroy());
    conn.pipe(upstream).pipe(conn);
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return sock;
}

/** Signs a file through the agent at `sock` with ssh-keygen -Y sign, then verifies the signature. */
async function signAndVerify(key: string, sock: string): Promise<void> {
  const message = join(dir, `message-${key.split('/').pop()}`);
  await writeFile(message, 'a commit to sign\n');
  await rm(`${message}.sig`, { force: true });
  // Given only the public key, ssh-keygen asks the agent to sign.
  await ok('ssh-keygen', ['-Y', 'sign', '-n', 'file', '-f', `${key}.pub`, message], sock);
  const signers = join(dir, 'allowed_signers');
  await writeFile(signers, `tester ${await readFile(`${key}.pub`, 'utf8')}`);
  const verify = await new Promise<Tool>((resolve) => {
    const child = execFile('ssh-keygen', ['-Y', 'verify', '-f', signers, '-I', 'tester', '-n', 'file', '-s', `${message}.sig`], { encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr }),
    );
    void readFile(message).then((data) => child.stdin!.end(data));
  });
  expect(verify.stdout + verify.stderr).toContain('Good "file" signature for tester');
  expect(verify.code).toBe(0);
}

describe('parseSshFlag (docker buildx --ssh syntax)', () => {
  it('reads an id alone as the caller SSH_AUTH_SOCK', () => {
    expect(parseSshFlag('default')).toEqual({ id: 'default', paths: [] });
    expect(parseSshFlag('github')).toEqual({ id: 'github', paths: [] });
    expect(parseSshFlag('default=')).toEqual({ id: 'default', paths: [] });
  });
  it('reads a socket or a comma-separated list of key files', () => {
    expect(parseSshFlag('default=/run/user/1000/agent.sock')).toEqual({ id: 'default', paths: ['/run/user/1000/agent.sock'] });
    expect(parseSshFlag('deploy=keys/a,keys/b')).toEqual({ id: 'deploy', paths: ['keys/a', 'keys/b'] });
    // Only the first '=' separates the id.
    expect(parseSshFlag('x=/keys/a=b')).toEqual({ id: 'x', paths: ['/keys/a=b'] });
  });
  it('takes an empty id as default, as buildx does', () => {
    expect(parseSshFlag('=/keys/a')).toEqual({ id: 'default', paths: ['/keys/a'] });
  });
  it('refuses an empty value or an empty path', () => {
    expect(() => parseSshFlag('')).toThrow(/--ssh needs a value/);
    expect(() => parseSshFlag('deploy=a,,b')).toThrow(/--ssh deploy=a,,b: empty path/);
  });
});

describe('SshAgents.open checks every agent before a build starts', () => {
  it('needs SSH_AUTH_SOCK for an agent without paths', async () => {
    await expect(SshAgents.open([{ id: 'default', paths: [] }], {})).rejects.toThrow('ssh agent "default": SSH_AUTH_SOCK is not set');
  });
  it('names the id and the path that does not exist', async () => {
    const missing = join(dir, 'nope');
    await expect(SshAgents.open([{ id: 'deploy', paths: [missing] }], {})).rejects.toThrow(`ssh agent "deploy": ${missing}: no such file or socket`);
    await expect(SshAgents.open([], { SSH_AUTH_SOCK: missing })).resolves.toBeDefined();
    await expect(SshAgents.open([{ id: 'default', paths: [] }], { SSH_AUTH_SOCK: missing })).rejects.toThrow(`ssh agent "default": ${missing}`);
  });
  it('refuses a directory, a public key, a file that is no key, and an id given twice', async () => {
    const sub = join(dir, 'a-dir');
    await mkdir(sub, { recursive: true });
    await expect(SshAgents.open([{ id: 'default', paths: [sub] }])).rejects.toThrow(`${sub} is neither an agent socket nor a private key file`);
    const key = await keygen('ed25519');
    await expect(SshAgents.open([{ id: 'default', paths: [`${key}.pub`] }])).rejects.toThrow(`ssh agent "default": ${key}.pub is a public key`);
    const junk = join(dir, 'junk');
    await writeFile(junk, 'not a key\n');
    await expect(SshAgents.open([{ id: 'default', paths: [junk] }])).rejects.toThrow(`ssh agent "default": ${junk} is not an SSH private key`);
    await expect(SshAgents.open([{ id: 'a', paths: [key] }, { id: 'a', paths: [key] }])).rejects.toThrow('ssh agent "a" is given twice');
  });
  it('refuses an encrypted key naming the file, without prompting', async () => {
    const key = await keygen('ed25519', 'correct horse');
    const err = await SshAgents.open([{ id: 'deploy', paths: [key] }]).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toContain(`ssh agent "deploy": ${key} is an encrypted private key`);
    expect(err?.message).toContain('cannot ask for its passphrase');
  });
  it('refuses a socket together with key files, and two sockets', async () => {
    const agent = await startAgent();
    const key = await keygen('ed25519');
    await expect(SshAgents.open([{ id: 'default', paths: [agent.sock, key] }])).rejects.toThrow('give one agent socket or private key files');
    await expect(SshAgents.open([{ id: 'default', paths: [agent.sock, agent.sock] }])).rejects.toThrow('give one agent socket or private key files');
  });
  it('refuses the stale socket of an agent that is gone', async () => {
    const agent = await startAgent();
    await agent.kill(); // SIGKILL leaves the socket file behind, as a crashed agent does
    await expect(SshAgents.open([{ id: 'default', paths: [] }], { SSH_AUTH_SOCK: agent.sock })).rejects.toThrow(
      `ssh agent "default": cannot connect to ${agent.sock}`,
    );
  });
});

describe('a forwarded agent socket', () => {
  let agent: { sock: string };
  let key: string;
  let agents: SshAgents;
  let served: string;

  beforeAll(async () => {
    agent = await startAgent();
    key = await keygen('ed25519');
    await ok('ssh-add', ['-q', key], agent.sock);
    agents = await SshAgents.open([parseSshFlag('default')], { SSH_AUTH_SOCK: agent.sock });
    served = await serve(agents.get('default')!);
  });
  afterAll(() => agents.close());

  it('lists the agent keys', async () => {
    const listed = await ok('ssh-add', ['-l'], served);
    expect(listed).toContain(await fingerprint(key));
    expect(listed).toContain('test-ed25519');
  });

  it('signs with them', async () => {
    await signAndVerify(key, served);
  });

  it('cannot remove, add or lock the caller keys', async () => {
    expect((await tool('ssh-add', ['-D'], served)).code).not.toBe(0);
    expect((await tool('ssh-add', ['-d', `${key}.pub`], served)).code).not.toBe(0);
    const other = await keygen('ed25519');
    expect((await tool('ssh-add', ['-q', other], served)).code).not.toBe(0);
    // The agent itself is untouched: same single key.
    const listed = (await ok('ssh-add', ['-l'], agent.sock)).trim().split('\n');
    expect(listed).toHaveLength(1);
    expect(listed[0]).toContain(await fingerprint(key));
  });

  it('answers pipelined requests in order, refused ones too, however the bytes arrive', async () => {
    const message = (type: number): Buffer => Buffer.from([0, 0, 0, 1, type]);
    const [list, removeAll] = [message(11), message(19)];
    const conn = agents.get('default')!.connect();
    const replies: number[] = [];
    let received = Buffer.alloc(0);
    const done = new Promise<void>((resolve) =>
      conn.on('data', (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        while (received.length >= 4 && received.length >= 4 + received.readUInt32BE(0)) {
          replies.push(received[4]!);
          received = received.subarray(4 + received.readUInt32BE(0));
        }
        if (replies.length === 4) resolve();
      }),
    );
    // One byte at a time: a message split over writes is still one message.
    for (const byte of Buffer.concat([list, removeAll, removeAll, list])) conn.write(Buffer.from([byte]));
    await done;
    conn.destroy();
    // SSH_AGENT_IDENTITIES_ANSWER (12) and SSH_AGENT_FAILURE (5), in the order asked.
    expect(replies).toEqual([12, 5, 5, 12]);
  });

  it('is no agent of an unknown id', () => {
    expect(agents.get('github')).toBeUndefined();
  });
});

describe('private key files served by the in-process agent', () => {
  let keys: string[];
  let agents: SshAgents;
  let served: string;

  beforeAll(async () => {
    keys = [await keygen('ed25519'), await keygen('rsa'), await keygen('ecdsa')];
    agents = await SshAgents.open([parseSshFlag(`deploy=${keys.join(',')}`)], {});
    served = await serve(agents.get('deploy')!);
  });
  afterAll(() => agents.close());

  it('lists every key', async () => {
    const listed = await ok('ssh-add', ['-l'], served);
    for (const key of keys) expect(listed).toContain(await fingerprint(key));
    expect(listed.trim().split('\n')).toHaveLength(3);
  });

  it.each([0, 1, 2])('signs with key %i (ed25519, rsa, ecdsa)', async (i) => {
    await signAndVerify(keys[i]!, served);
  });

  it('does not sign with a key it does not hold', async () => {
    const other = await keygen('ed25519');
    // Without its private key file, which ssh-keygen would sign with itself.
    await rm(other);
    const r = await tool('ssh-keygen', ['-Y', 'sign', '-n', 'file', '-f', `${other}.pub`, keys[0]!], served);
    expect(r.code).not.toBe(0);
  });

  it('refuses to add keys', async () => {
    const other = await keygen('ed25519');
    expect((await tool('ssh-add', ['-q', other], served)).code).not.toBe(0);
    expect((await ok('ssh-add', ['-l'], served)).trim().split('\n')).toHaveLength(3);
  });
});

describe('SshAgents.close', () => {
  it('ends open connections and refuses new ones', async () => {
    const key = await keygen('ed25519');
    const agents = await SshAgents.open([{ id: 'default', paths: [key] }]);
    const connector = agents.get('default')!;
    const conn = connector.connect();
    const ended = new Promise<void>((resolve) => conn.once('close', () => resolve()));
    agents.close();
    await ended;
    expect(() => connector.connect()).toThrow('ssh agent "default" is closed');
    expect(agents.get('default')).toBeUndefined();
  });
});

describe('the ssh-add test image', () => {
  it('lists a forwarded agent key from inside a runc container', async () => {
    const key = await keygen('ed25519');
    const agents = await SshAgents.open([{ id: 'default', paths: [key] }]);
    cleanups.push(() => agents.close());
    const bundle = join(dir, 'ssh-add-bundle');
    await ok('umoci', ['unpack', '--image', `${await sshAddLayout()}:latest`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    // A socket in the rootfs is reachable from the container (until the executor's ssh mount).
    await mkdir(join(rootfs, 'run'), { recursive: true });
    await serve(agents.get('default')!, join(rootfs, 'run/agent.sock'));
    let out = '';
    const r = await new RuncExecutor({ bundleRoot: join(dir, 'runc') }).run({
      rootfs,
      args: ['ssh-add', '-l'],
      env: ['PATH=/usr/bin:/bin', 'SSH_AUTH_SOCK=/run/agent.sock'],
      cwd: '/',
      user: '',
      network: 'none',
      stdout: (c) => (out += c.toString()),
      stderr: (c) => (out += c.toString()),
    });
    expect(out).toContain(await fingerprint(key));
    expect(r.exitCode).toBe(0);
  });
});

// A real OCI registry for tests: the CNCF distribution registry (`docker-registry` package)
// started on 127.0.0.1 on a free port, storing into a temp dir that stop() removes.
//
//   const reg = await startRegistry();                                     // anonymous
//   const reg = await startRegistry({ htpasswd: { user: 'u', password: 'p' } }); // Basic auth
//   const reg = await startRegistry({ token: { users: { u: 'p' } } });     // Bearer tokens, like Docker Hub
//   const reg = await startRegistry({ tls: { hostname: 'registry.test' } }); // HTTPS, CA at reg.caPath
//   ... use reg.host ('127.0.0.1:PORT') ...
//   await reg.stop();
//
// Token auth runs a small token server in this process: it signs JWTs (RS256, certificate in the
// `x5c` header) with a throwaway key whose certificate the registry trusts, grants everything to
// known users and pull-only to anonymous callers (unless anonymousPull is false), and records the
// requests it answered in `tokenRequests`. The registry's log is at `logPath` for post-mortems.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createSign, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { get as httpsGet } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export interface RegistryOptions {
  /** Basic auth with one user (file made with `htpasswd -Bbn`). */
  htpasswd?: { user: string; password: string };
  /** Bearer token auth through an in-process token server. */
  token?: {
    /** user → password accepted by the token server. */
    users?: Record<string, string>;
    /** Whether callers without credentials get pull access (default true, as on Docker Hub). */
    anonymousPull?: boolean;
  };
  /** Serve HTTPS with a certificate for `hostname` (and 127.0.0.1) signed by a throwaway CA (`caPath`). */
  tls?: { hostname: string };
}

export interface TokenRequest {
  /** The authenticated user, undefined for anonymous requests. */
  user?: string;
  scopes: string[];
  /** The HTTP status the token server answered. */
  status: number;
}

export interface RunningRegistry {
  /** `127.0.0.1:PORT`, usable in image references (`${host}/library/busybox:latest`). */
  host: string;
  logPath: string;
  /** Token auth only: every request the token server answered, in order. */
  tokenRequests: TokenRequest[];
  /** TLS only: the PEM certificate of the CA that signed the registry's certificate. */
  caPath: string;
  stop(): Promise<void>;
}

/** Why a registry cannot be started here, or undefined when it can (for `describe.skipIf`). */
export function registryUnavailable(): string | undefined {
  return existsSync(REGISTRY_BIN) ? undefined : `${REGISTRY_BIN} not found (apt-get install -y docker-registry)`;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  const missing = registryUnavailable();
  if (missing) throw new Error(`cannot start a test registry: ${missing}`);
  if (opts.htpasswd && opts.token) throw new Error('startRegistry: choose htpasswd or token auth, not both');

  const dir = await mkdtemp(join(tmpdir(), 'builder-registry-'));
  const logPath = join(dir, 'registry.log');
  const tokenRequests: TokenRequest[] = [];
  let tokenServer: Server | undefined;
  try {
    let authYaml = '';
    if (opts.htpasswd) {
      const line = execFileSync('htpasswd', ['-Bbn', opts.htpasswd.user, opts.htpasswd.password], { encoding: 'utf8' });
      writeFileSync(join(dir, 'htpasswd'), line.trim() + '\n');
      authYaml = `auth:\n  htpasswd:\n    realm: builder-test\n    path: ${join(dir, 'htpasswd')}\n`;
    }
    if (opts.token) {
      const started = await startTokenServer(dir, opts.token, tokenRequests);
      tokenServer = started.server;
      authYaml =
        `auth:\n  token:\n    realm: ${started.realm}\n    service: ${TOKEN_SERVICE}\n` +
        `    issuer: ${TOKEN_ISSUER}\n    rootcertbundle: ${started.certPath}\n`;
    }

    let tlsYaml = '';
    let caPath = '';
    if (opts.tls) {
      caPath = makeCertificates(dir, opts.tls.hostname);
      tlsYaml = `  tls:\n    certificate: ${join(dir, 'server.crt')}\n    key: ${join(dir, 'server.key')}\n`;
    }

    // The port is free when probed; if another process grabs it first the registry exits, and we retry.
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      const host = `127.0.0.1:${port}`;
      writeFileSync(join(dir, 'config.yml'), registryConfig(dir, host, authYaml, tlsYaml));
      const child = spawnRegistry(dir, logPath);
      const ready = await waitReady(host, child, Boolean(opts.tls));
      if (ready === 'ready') {
        return {
          host,
          logPath,
          tokenRequests,
          caPath,
          stop: async () => {
            await stopChild(child);
            if (tokenServer) await new Promise<void>((resolve) => tokenServer?.close(() => resolve()));
            await rm(dir, { recursive: true, force: true });
          },
        };
      }
      await stopChild(child);
      if (attempt >= 2) {
        const log = await readFile(logPath, 'utf8').catch(() => '');
        throw new Error(`docker-registry did not start (${ready}); log ${logPath}:\n${log.split('\n').slice(-20).join('\n')}`);
      }
    }
  } catch (err) {
    tokenServer?.close();
    // Keep the log of a failed start for diagnosis, drop the rest.
    if (existsSync(logPath)) writeFileSync(join(tmpdir(), `builder-registry-failed-${process.pid}.log`), readFileSync(logPath));
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

function registryConfig(dir: string, host: string, authYaml: string, tlsYaml = ''): string {
  return [
    'version: 0.1',
    'log:',
    '  level: info',
    '  fields:',
    '    service: registry',
    'storage:',
    '  cache:',
    '    blobdescriptor: inmemory',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${host}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    '  headers:',
    '    X-Content-Type-Options: [nosniff]',
    ...(tlsYaml ? [tlsYaml.trimEnd()] : []),
    authYaml.trimEnd(),
    '',
  ].join('\n');
}

function spawnRegistry(dir: string, logPath: string): ChildProcess {
  const fd = openSync(logPath, 'a');
  const child = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // A test run that dies without stop() must not leave registries behind.
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  return child;
}

async function waitReady(host: string, child: ChildProcess, tls = false): Promise<'ready' | string> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return `exited with ${child.exitCode ?? child.signalCode}`;
    try {
      const status = tls ? await httpsStatus(`https://${host}/v2/`) : await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(1000) }).then(async (res) => {
        await res.arrayBuffer();
        return res.status;
      });
      if (status === 200 || status === 401) return 'ready';
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  return 'timed out after 15 s';
}

/** Status of a GET over HTTPS without verifying the certificate (readiness only). */
function httpsStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { rejectUnauthorized: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject).on('timeout', () => req.destroy(new Error('timeout')));
  });
}

/**
 * A CA and a server certificate for `hostname` and 127.0.0.1 signed by it, in `dir` (which must
 * exist): `server.key`, `server.crt`; returns the CA's path.
 */
export function makeCertificates(dir: string, hostname: string): string {
  const ssl = (args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore', cwd: dir });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=builder-test-ca']);
  ssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${hostname}`]);
  writeFileSync(join(dir, 'server.ext'), `subjectAltName=DNS:${hostname},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n`);
  ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext']);
  return join(dir, 'ca.crt');
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------------------------------------
// Token server

const TOKEN_SERVICE = 'builder-test-registry';
const TOKEN_ISSUER = 'builder-test-issuer';

async function startTokenServer(
  dir: string,
  opts: NonNullable<RegistryOptions['token']>,
  log: TokenRequest[],
): Promise<{ server: Server; realm: string; certPath: string }> {
  const keyPath = join(dir, 'token.key');
  const certPath = join(dir, 'token.crt');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=builder-test-token'],
    { stdio: 'ignore' },
  );
  const key = readFileSync(keyPath, 'utf8');
  const certDer = new X509Certificate(readFileSync(certPath)).raw.toString('base64');
  const users = opts.users ?? {};
  const anonymousPull = opts.anonymousPull ?? true;

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token');
    const scopes = url.searchParams.getAll('scope');
    const answer = (status: number, body: unknown, user?: string): void => {
      log.push({ user, scopes, status });
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (url.pathname !== '/token') return answer(404, { errors: [{ code: 'NOT_FOUND' }] });
    let user: string | undefined;
    const authz = req.headers.authorization;
    if (authz?.startsWith('Basic ')) {
      const decoded = Buffer.from(authz.slice(6), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const [name, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
      if (colon < 0 || users[name] === undefined || users[name] !== password) {
        return answer(401, { errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] });
      }
      user = name;
    }
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = scope.split(':');
      if (type !== 'repository' || !name || !actions) return [];
      const granted = user ? actions.split(',') : anonymousPull ? actions.split(',').filter((a) => a === 'pull') : [];
      return [{ type, name, actions: granted }];
    });
    const token = signJwt(key, certDer, {
      iss: TOKEN_ISSUER,
      sub: user ?? '',
      aud: url.searchParams.get('service') ?? TOKEN_SERVICE,
      exp: Math.floor(Date.now() / 1000) + 300,
      nbf: Math.floor(Date.now() / 1000) - 10,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      access,
    });
    answer(200, { token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }, user);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, realm: `http://127.0.0.1:${port}/token`, certPath };
}

function signJwt(keyPem: string, certDerBase64: string, claims: Record<string, unknown>): string {
  const b64url = (data: string | Buffer): string => Buffer.from(data).toString('base64url');
  const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [certDerBase64] }));
  const payload = b64url(JSON.stringify(claims));
  const signature = createSign('RSA-SHA256').update(`${header}.${payload}`).sign(keyPem);
  return `${header}.${payload}.${b64url(signature)}`;
}

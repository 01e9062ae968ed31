// `builder login` and `builder logout`: the credentials docker, skopeo and builder read.
//
//   echo "$TOKEN" | builder login -u USER --password-stdin registry.example.com
//   builder logout registry.example.com
//
// Like `docker login`, the credentials are checked against the registry first (its /v2/ endpoint,
// through the Basic or Bearer challenge it answers with) and saved only if it accepts them.

import { parseArgs } from 'node:util';
import { StaticCredentialStore } from '../registry/auth.js';
import { RegistryClient } from '../registry/client.js';
import { loginServer, removeCredentials, saveCredentials } from '../registry/docker-config.js';

const LOGIN_USAGE = `Usage: builder login [OPTIONS] [SERVER]

Log in to a registry (default: Docker Hub). The credentials are checked against the registry,
then saved in $DOCKER_CONFIG/config.json (else ~/.docker/config.json), or in the credential
helper that file names, where docker and skopeo find them too.

Options:
  -u, --username USER       Username
      --password-stdin      Read the password (or token) from standard input
  -p, --password PASS       Password on the command line (visible to other users: prefer --password-stdin)
      --insecure-registry H Use plain HTTP for registry H (loopback ones always are)
  -h, --help                Show this help
`;

const LOGOUT_USAGE = `Usage: builder logout [SERVER]

Remove the credentials saved for a registry (default: Docker Hub).
`;

class LoginUsageError extends Error {}

/** Runs `builder login|logout ARGS`; returns the exit code. */
export async function runLoginCommand(command: 'login' | 'logout', args: string[]): Promise<number> {
  try {
    return command === 'login' ? await login(args) : await logout(args);
  } catch (err) {
    if (!(err instanceof LoginUsageError)) throw err;
    process.stderr.write(`ERROR: ${err.message}\n`);
    return 2;
  }
}

async function login(args: string[]): Promise<number> {
  const { values, positionals } = parse(() =>
    parseArgs({
      args,
      allowPositionals: true,
      options: {
        username: { type: 'string', short: 'u' },
        password: { type: 'string', short: 'p' },
        'password-stdin': { type: 'boolean' },
        'insecure-registry': { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help) {
    process.stdout.write(LOGIN_USAGE);
    return 0;
  }
  if (positionals.length > 1) throw new LoginUsageError('"builder login" takes at most 1 argument: the registry SERVER');
  const username = values.username;
  let password = values.password;
  if (values['password-stdin']) {
    if (password !== undefined) throw new LoginUsageError('--password and --password-stdin are mutually exclusive');
    if (!username) throw new LoginUsageError('must provide --username with --password-stdin');
    password = (await readStdin()).replace(/\r?\n$/, '');
  } else if (password !== undefined) {
    process.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  }
  if (!username) throw new LoginUsageError('a username is required: builder login -u USER --password-stdin [SERVER]');
  if (!password) throw new LoginUsageError('a password is required: pipe it into builder login -u USER --password-stdin [SERVER]');

  let server: ReturnType<typeof loginServer>;
  try {
    server = loginServer(positionals[0]);
  } catch (err) {
    throw new LoginUsageError((err as Error).message);
  }
  const creds = { username, password };
  const client = new RegistryClient({
    credentials: new StaticCredentialStore({ [server.registry]: creds }),
    insecureRegistries: values['insecure-registry'],
    retry: { retries: 2 },
  });
  try {
    await client.checkLogin(server.registry);
  } finally {
    await client.close();
  }
  const where = await saveCredentials(positionals[0], creds);
  process.stderr.write(where.helper ? `credentials stored in docker-credential-${where.helper}\n` : `credentials saved in ${where.path}\n`);
  process.stdout.write('Login Succeeded\n');
  return 0;
}

async function logout(args: string[]): Promise<number> {
  const { values, positionals } = parse(() => parseArgs({ args, allowPositionals: true, options: { help: { type: 'boolean', short: 'h' } } }));
  if (values.help) {
    process.stdout.write(LOGOUT_USAGE);
    return 0;
  }
  if (positionals.length > 1) throw new LoginUsageError('"builder logout" takes at most 1 argument: the registry SERVER');
  let server: ReturnType<typeof loginServer>;
  try {
    server = loginServer(positionals[0]);
  } catch (err) {
    throw new LoginUsageError((err as Error).message);
  }
  const removed = await removeCredentials(positionals[0]);
  process.stdout.write(removed ? `Removing login credentials for ${server.key}\n` : `Not logged in to ${server.key}\n`);
  return 0;
}

function parse<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new LoginUsageError((err as Error).message);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

// Docker's credential helper protocol, the one runner for it: `docker-credential-<name> VERB` with
// the request on stdin. `get` reads a server name and prints {"ServerURL","Username","Secret"};
// `store` reads that JSON; `erase` reads a server name. Helpers print their errors (never a
// secret) on stdout, and "credentials not found" when they hold nothing for the server.

import { spawn } from 'node:child_process';
import type { Credentials } from './auth.js';

const TIMEOUT_MS = 60_000;

/** A helper that ran and failed; `notFound` when it said it holds no credentials for the server. */
class CredentialHelperError extends Error {
  constructor(
    message: string,
    readonly notFound: boolean,
  ) {
    super(message);
    this.name = 'CredentialHelperError';
  }
}

/** Runs `docker-credential-<helper> <verb>` for `server` with `input` on stdin; resolves with its stdout. */
async function runHelper(helper: string, verb: 'get' | 'store' | 'erase', server: string, input: string): Promise<string> {
  const program = `docker-credential-${helper}`;
  const result = await new Promise<{ code: number | null; stdout: string; stderr: string; error?: Error }>((resolve) => {
    const child = spawn(program, [verb], { stdio: ['pipe', 'pipe', 'pipe'], timeout: TIMEOUT_MS });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (error) => resolve({ code: null, stdout, stderr, error }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
  if (result.error) throw new Error(`credential helper ${program} for ${server} could not be run: ${result.error.message}`);
  if (result.code !== 0) {
    const said = (result.stdout.trim() || result.stderr.trim()).split('\n')[0] || `exit ${result.code}`;
    const notFound = /credentials not found/i.test(result.stdout + result.stderr);
    throw new CredentialHelperError(`credential helper ${program} ${verb} failed for ${server}: ${said}`, notFound);
  }
  return result.stdout;
}

/**
 * The credentials `helper` holds for `server`, or undefined when it has none. A Username of
 * `<token>` marks Secret as an identity token.
 */
export async function runCredentialHelper(helper: string, server: string): Promise<Credentials | undefined> {
  let stdout: string;
  try {
    stdout = await runHelper(helper, 'get', server, server);
  } catch (err) {
    if (err instanceof CredentialHelperError && err.notFound) return undefined;
    throw err;
  }
  let parsed: { Username?: string; Secret?: string };
  try {
    parsed = JSON.parse(stdout) as { Username?: string; Secret?: string };
  } catch {
    throw new Error(`credential helper docker-credential-${helper} returned invalid JSON for ${server}`);
  }
  if (!parsed.Secret) return undefined;
  if (parsed.Username === '<token>') return { username: '', password: '', identityToken: parsed.Secret };
  return { username: parsed.Username ?? '', password: parsed.Secret };
}

/** Hands `creds` for `server` to the helper, as `docker login` does with one configured. */
export async function storeWithHelper(helper: string, server: string, creds: Credentials): Promise<void> {
  await runHelper(helper, 'store', server, JSON.stringify({ ServerURL: server, Username: creds.username, Secret: creds.identityToken ?? creds.password }));
}

/** Removes the helper's credentials for `server`; false when it held none. */
export async function eraseWithHelper(helper: string, server: string): Promise<boolean> {
  try {
    await runHelper(helper, 'erase', server, server);
    return true;
  } catch (err) {
    if (err instanceof CredentialHelperError && err.notFound) return false;
    throw err;
  }
}

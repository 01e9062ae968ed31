// The credential-helper runner against real helper programs (shell scripts on PATH) speaking
// docker's protocol: what each verb sends, and how "not found" and failures come back.

import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeCredentials, runCredentialHelper, saveCredentials } from '../../src/registry/index.js';

let dir: string;
let savedPath: string | undefined;

/** A helper that logs each verb and its stdin, and answers from a one-entry vault. */
const VAULT_HELPER = `#!/bin/sh
input=$(cat)
echo "$1 $input" >> "$(dirname "$0")/log"
case "$1" in
  get) if [ "$input" = "known.example" ]; then echo '{"ServerURL":"known.example","Username":"<token>","Secret":"refresh-me"}'; else echo "credentials not found in native keychain"; exit 1; fi ;;
  store) exit 0 ;;
  erase) echo "credentials not found in native keychain"; exit 1 ;;
esac
`;

/** A helper that fails the way a locked keychain does. */
const BROKEN_HELPER = `#!/bin/sh
cat > /dev/null
echo "error getting credentials - err: exit status 1, out: keychain is locked" >&2
exit 1
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'builder-cred-helper-'));
  for (const [name, text] of [
    ['docker-credential-vault', VAULT_HELPER],
    ['docker-credential-broken', BROKEN_HELPER],
  ] as const) {
    await writeFile(join(dir, name), text);
    await chmod(join(dir, name), 0o755);
  }
  savedPath = process.env.PATH;
  process.env.PATH = `${dir}:${savedPath ?? ''}`;
});
afterAll(async () => {
  process.env.PATH = savedPath;
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('credential helpers', () => {
  it('gets an identity token for a known server and nothing for an unknown one', async () => {
    expect(await runCredentialHelper('vault', 'known.example')).toEqual({ username: '', password: '', identityToken: 'refresh-me' });
    expect(await runCredentialHelper('vault', 'other.example')).toBeUndefined();
  });

  it('names the helper, the verb, the server and what the helper said when it fails', async () => {
    await expect(runCredentialHelper('broken', 'known.example')).rejects.toThrow(
      'credential helper docker-credential-broken get failed for known.example: error getting credentials - err: exit status 1, out: keychain is locked',
    );
    await expect(runCredentialHelper('missing', 'known.example')).rejects.toThrow(/docker-credential-missing for known\.example could not be run/);
  });

  it('stores through the helper on login and treats "not found" on logout as nothing to remove', async () => {
    const path = join(dir, 'config.json');
    await writeFile(path, JSON.stringify({ credsStore: 'vault' }));
    expect(await saveCredentials('known.example', { username: 'u', password: 'p' }, { path })).toEqual({ path, helper: 'vault' });
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ credsStore: 'vault', auths: { 'known.example': {} } });
    expect(await removeCredentials('other.example', { path })).toBe(false);
    const log = await readFile(join(dir, 'log'), 'utf8');
    expect(log).toContain('store {"ServerURL":"known.example","Username":"u","Secret":"p"}');
    expect(log).toContain('erase other.example');
  });
});

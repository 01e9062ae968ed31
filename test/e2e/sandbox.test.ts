// The RUN sandbox as a user meets it: Docker's default seccomp profile and capabilities, and the
// entitlements (`--allow`) a Dockerfile needs to leave them. Real CLI, runc and registry.

import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events, leftoverContainers, mountsUnder, runBuilder } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('sandbox');

describe('the RUN sandbox', () => {
  let root: string;
  /** A server on the host's loopback: only a step with the host network can reach it. */
  let server: Server;
  let url: string;
  const token = randomBytes(8).toString('hex');
  let requests = 0;

  beforeAll(async () => {
    root = join(fx.work, 'root');
    server = createServer((_req, res) => {
      requests++;
      res.end(`${token}\n`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('no server address');
    url = `http://127.0.0.1:${address.port}/`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
  });

  async function context(name: string, dockerfile: string): Promise<string> {
    const dir = join(fx.work, name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), dockerfile);
    return dir;
  }

  const build = (dir: string, ...flags: string[]) => runBuilder(['build', '--root', root, '--progress', 'plain', ...flags, dir]);

  it('a default RUN cannot create namespaces or mount, while ordinary commands work', async () => {
    const dir = await context(
      'seccomp',
      `FROM ${fx.base}
RUN mkdir -p /data && chown app:app /data && su app -s /bin/sh -c 'touch /data/mine' && stat -c 'owner %U' /data/mine && chroot / true && echo ORDINARY_$((1+1))
RUN mkdir -p /m && unshare -Urm sh -c 'mount -t tmpfs t /m && echo ESCAPED_$((1+1))'
`,
    );
    const r = await build(dir, '--network', 'none');
    expect(r.stderr).toContain('owner app');
    expect(r.stderr).toContain('ORDINARY_2');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:3/);
    expect(r.stderr).toMatch(/unshare.*Operation not permitted/);
    expect(r.stderr).not.toContain('ESCAPED_2');
    expect(leftoverContainers(root)).toEqual([]);
    expect(mountsUnder(root)).toEqual([]);
  });

  it('RUN --network=host without --allow network.host fails before anything runs, whatever --network says', async () => {
    const dir = await context('host-refused', `FROM ${fx.base}\nRUN echo first\nRUN --network=host wget -q -O- ${url}\n`);
    for (const flags of [['--network', 'none'], [], ['--allow', 'security.insecure']]) {
      const r = await runBuilder(['build', '--root', root, '--progress', 'json', ...flags, dir]);
      expect(r.code, flags.join(' ')).toBe(2); // refused by the Dockerfile's compilation: nothing ran
      expect(r.stderr).toContain('Dockerfile:3: RUN --network=host is not allowed: the build must grant the network.host entitlement (builder build --allow network.host)');
      expect(events(r.stderr).filter((e) => e.type === 'step' && e.name.includes('RUN'))).toEqual([]);
    }
    // The plan says so too.
    const plan = await build(dir, '--network', 'none', '--dry-run');
    expect(plan.code).toBe(2);
    expect(plan.stderr).toContain('Dockerfile:3: RUN --network=host is not allowed');
    expect(requests).toBe(0);
  });

  it('with --allow network.host that step reaches the host loopback; the others keep --network none', async () => {
    const dir = await context(
      'host-allowed',
      `FROM ${fx.base}\nRUN --network=host wget -q -O- ${url}\nRUN wget -q -T 2 -O- ${url} || echo UNREACHABLE_$((1+1))\n`,
    );
    const r = await build(dir, '--network', 'none', '--allow', 'network.host');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(token);
    expect(r.stderr).toContain('UNREACHABLE_2');
    expect(requests).toBe(1);
  });

  it('RUN --security=insecure runs privileged with --allow security.insecure, and not without', async () => {
    const dir = await context(
      'insecure',
      `FROM ${fx.base}\nRUN --security=insecure mkdir -p /m && mount -t tmpfs t /m && grep '^Seccomp:' /proc/self/status && echo PRIVILEGED_$((1+1))\n`,
    );
    const refused = await build(dir, '--network', 'none');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('Dockerfile:2: RUN --security=insecure is not allowed: the build must grant the security.insecure entitlement (builder build --allow security.insecure)');
    const r = await build(dir, '--network', 'none', '--allow', 'network.host,security.insecure');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/Seccomp:\s+0/);
    expect(r.stderr).toContain('PRIVILEGED_2');
    expect(leftoverContainers(root)).toEqual([]);
    expect(mountsUnder(root)).toEqual([]);
  });

  it('--allow takes only known entitlements', async () => {
    const dir = await context('bad-allow', `FROM ${fx.base}\nRUN true\n`);
    const r = await build(dir, '--allow', 'network.host,device');
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('ERROR: invalid --allow "device": use network.host or security.insecure\n');
  });
});

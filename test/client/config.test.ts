// builder's configuration file: dockerd's registry settings ("insecure-registries",
// "registry-mirrors") under the same names, found at --config, BUILDER_CONFIG or
// ~/.config/builder/config.json.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from '../../src/client/config.js';
import { pushBusyboxImage } from '../helpers/base-image.js';
import { runBuilder } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('config');

describe('the configuration file', () => {
  it('reads dockerd-style registry settings and refuses what it does not know, naming the file and place', async () => {
    expect(parseConfig('{"insecure-registries": ["r.lan:5000"], "registry-mirrors": ["https://m.lan"]}', 'c.json')).toEqual({
      insecureRegistries: ['r.lan:5000'],
      registryMirrors: ['https://m.lan'],
    });
    expect(() => parseConfig('{\n  "registry-mirrors": ["https://m.lan"]\n  "insecure-registries": []\n}', 'c.json')).toThrow(/^c\.json:3:3: invalid JSON/);
    expect(() => parseConfig('{"registry-mirror": ["https://m.lan"]}', 'c.json')).toThrow('c.json: unknown setting "registry-mirror" (known: insecure-registries, registry-mirrors, gc)');
    expect(() => parseConfig('{"registry-mirrors": "https://m.lan"}', 'c.json')).toThrow('"registry-mirrors" must be a list of non-empty strings');
    // The collection's limit: a size as --keep-storage takes it, or bytes; 0 turns it off.
    expect(parseConfig('{"gc": {"keepStorage": "5GB"}}', 'c.json').gcKeepStorage).toBe(5 * 1024 ** 3);
    expect(parseConfig('{"gc": {"keepStorage": 0}}', 'c.json').gcKeepStorage).toBe(0);
    expect(() => parseConfig('{"gc": {"keepStorage": "lots"}}', 'c.json')).toThrow('c.json: "gc.keepStorage": invalid value for size: "lots"');
    expect(() => parseConfig('{"gc": {"keep": "5GB"}}', 'c.json')).toThrow('c.json: unknown setting "gc.keep" (known: gc.keepStorage)');
    expect(() => parseConfig('{"gc": {"keepStorage": -1}}', 'c.json')).toThrow(/c\.json: "gc\.keepStorage": expected a size/);

    // No file where builder looks by default: no settings. A file named explicitly must exist.
    const home = join(fx.work, 'home');
    expect(await loadConfig(undefined, { XDG_CONFIG_HOME: home })).toEqual({ insecureRegistries: [], registryMirrors: [] });
    await expect(loadConfig(undefined, { BUILDER_CONFIG: join(home, 'nope.json') })).rejects.toBeInstanceOf(ConfigError);
    await mkdir(join(home, 'builder'), { recursive: true });
    await writeFile(join(home, 'builder', 'config.json'), '{"insecure-registries": ["r.lan:5000"]}');
    expect(await loadConfig(undefined, { XDG_CONFIG_HOME: home })).toMatchObject({ insecureRegistries: ['r.lan:5000'] });
  });

  it('makes `builder build` pull Docker Hub images through the mirrors it lists', async () => {
    // The mirror serves library/busybox, so nothing is asked of Docker Hub itself.
    await pushBusyboxImage(fx.registry.host, 'library/busybox', 'latest');
    const ctx = join(fx.work, 'mirror-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY a.txt /a.txt\n');
    await writeFile(join(ctx, 'a.txt'), 'a\n');
    const config = join(fx.work, 'mirror.json');
    await writeFile(config, JSON.stringify({ 'registry-mirrors': [`http://${fx.registry.host}`] }));

    const r = await runBuilder(['build', '--root', join(fx.work, 'mirror-root'), '--progress', 'plain', '--config', config, ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(fx.registry.logPath, 'utf8')).toMatch(/"GET \/v2\/library\/busybox\/manifests\/latest HTTP\/1\.1" 200/);
  });

  it('stops `builder build` with the file, line and reason when it is broken', async () => {
    const config = join(fx.work, 'broken.json');
    await writeFile(config, '{\n  "registry-mirrors": ["https://m.lan"]\n  "insecure-registries": []\n}\n');
    const r = await runBuilder(['build', '--root', join(fx.work, 'broken-root'), join(fx.work)], { env: { ...process.env, BUILDER_CONFIG: config } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`ERROR: ${config}:3:3: invalid JSON: Expected ',' or '}' after property value`);
  });
});

// Moving layers alone, beside `skopeo copy` on the same local registry: push and pull of a
// 112 MB image of four incompressible layers (8, 16, 40 and 48 MB). The push uses builder's
// registry client as `build --push` does (push-worker.mjs) and goes to a new registry each run,
// so no blob can be skipped or mounted; the pull is `builder pull` into an empty state directory.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ARCH, pushLayout, startRegistry, timed, writeLayout } from '../lib/env.mjs';
import { keystream } from '../lib/fixtures.mjs';
import { BUILDER, PEAK_RSS, memorySampling } from '../lib/tools.mjs';

const LAYER_MB = [8, 16, 40, 48];
const WORKER = fileURLToPath(new URL('../lib/push-worker.mjs', import.meta.url));

let made;
/** The image's OCI layout, made once per bench run. */
function transferImage(env) {
  made ??= (async () => {
    const dirs = LAYER_MB.map((mb, i) => {
      const dir = join(env.work, 'transfer', `layer${i}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `data${i}.bin`), keystream(`layer${i}`).bytes(mb * 2 ** 20));
      return dir;
    });
    const { layout } = await writeLayout(join(env.work, 'transfer', 'layout'), dirs);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    return layout;
  })();
  return made;
}

export const transferPush = {
  name: 'transfer-push',
  title: 'push of a 112 MB image, the transfer alone',
  extra: true,
  peers: ['skopeo'],
  async prepare(env) {
    const layout = await transferImage(env);
    let registry;
    const fresh = async () => {
      registry?.stop();
      registry = await startRegistry(mkdtempSync(join(env.work, 'transfer-registry-')));
    };
    return {
      before: fresh,
      run: async (tool) => {
        const ref = `${registry.host}/bench/transfer:latest`;
        const r =
          tool.name === 'builder'
            ? await timed(process.execPath, [WORKER, layout, ref], { env: { NODE_OPTIONS: `--require ${PEAK_RSS}` }, sampleTree: memorySampling.on })
            : await timed('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:latest`, `docker://${ref}`]);
        return { ms: r.ms, peakBytes: r.peakBytes };
      },
      teardown: () => registry?.stop(),
    };
  },
};

export const transferPull = {
  name: 'transfer-pull',
  title: 'pull of a 112 MB image, the transfer alone',
  extra: true,
  peers: ['skopeo'],
  async prepare(env) {
    const ref = `${env.registry}/bench/transfer:latest`;
    pushLayout(await transferImage(env), ref);
    const dest = join(env.work, 'transfer-pulled');
    return {
      before: () => rmSync(dest, { recursive: true, force: true }),
      run: async (tool) => {
        const r =
          tool.name === 'builder'
            ? await timed(BUILDER, ['pull', '--progress', 'quiet', '--root', dest, ref], { env: { NODE_OPTIONS: `--require ${PEAK_RSS}` }, sampleTree: memorySampling.on })
            : await timed('skopeo', ['copy', '--quiet', '--src-tls-verify=false', '--override-arch', ARCH, `docker://${ref}`, `oci:${dest}:latest`]);
        return { ms: r.ms, peakBytes: r.peakBytes };
      },
    };
  },
};

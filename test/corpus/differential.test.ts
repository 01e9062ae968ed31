// Differential test against BuildKit: the same Dockerfiles (in the corpus' style, on a busybox base
// image served by a local registry) built by `docker build` (BuildKit) and by builder; the image
// configs and the unpacked filesystems must agree. Needs a working docker engine (`docker info`);
// without one the tests are skipped, with the reason in their name.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/build.js';
import type { ContainerConfig } from '../../src/oci/types.js';
import { pushBusyboxImage } from '../helpers/base-image.js';
import { startRegistry } from '../helpers/registry.js';

/** Docker 20.10's own CLI drives its built-in BuildKit without buildx (see TESTBED.md). */
const DOCKER = ['/usr/bin/docker', '/usr/local/bin/docker'].find((p) => spawnSync(p, ['--version']).status === 0) ?? 'docker';

function dockerUnavailable(): string | undefined {
  const r = spawnSync(DOCKER, ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', timeout: 20_000 });
  if (r.error) return `no docker client (${r.error.message})`;
  if (r.status !== 0) return `docker info failed: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`;
  return undefined;
}

const skipReason = dockerUnavailable();
if (skipReason) console.warn(`differential tests against BuildKit skipped: ${skipReason}`);

/** Dockerfiles for both builders; `@@BASE@@` is replaced by the local registry's busybox image. */
const CASES: Record<string, { dockerfile: string; files?: Record<string, string>; links?: Record<string, string> }> = {
  'multi-stage-arg-from': {
    dockerfile: `ARG BASE_IMAGE=@@BASE@@
FROM \${BASE_IMAGE} AS build
WORKDIR /src
COPY app/ ./
RUN set -eux; \\
    mkdir -p /out; \\
    for f in *.txt; do \\
      tr a-z A-Z < "$f" > "/out/$f"; \\
    done; \\
    echo built > /out/STAMP

FROM \${BASE_IMAGE}
ARG VERSION=1.2.3
ENV APP_HOME=/opt/app \\
    APP_VERSION=\${VERSION}
LABEL org.opencontainers.image.version="\${VERSION}" maintainer="corpus"
WORKDIR \${APP_HOME}
COPY --from=build /out/ ./data/
COPY --chown=1000:1000 app/config.ini /etc/app/
EXPOSE 8080 9000-9002/udp
VOLUME ["/var/lib/app"]
USER 1000:1000
HEALTHCHECK --interval=30s --timeout=3s CMD ["wget", "-q", "-O-", "http://localhost:8080/"]
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /opt/app/data/STAMP"]
`,
    files: { 'app/a.txt': 'alpha\n', 'app/b.txt': 'beta\n', 'app/config.ini': '[app]\nport=8080\n' },
  },
  'shell-and-env': {
    dockerfile: `FROM @@BASE@@
SHELL ["/bin/sh", "-e", "-c"]
ENV A=1 B="two words"
ENV C=$A-$B
RUN echo "$C" > /c.txt && ln -s /c.txt /link && mkdir -p /d/e && chmod 0750 /d/e
WORKDIR relative/dir
RUN pwd > /pwd.txt
ONBUILD RUN echo child
CMD echo "$C"
`,
  },
  // (A COPY --from naming a stage defined later is left out: Docker 20.10's BuildKit copies from
  // that stage's base, before its instructions; builder compiles stages in dependency order.)
  'args-copy-onbuild': {
    dockerfile: `ARG TAG=latest
ARG GLOBAL=global-value
FROM @@BASE@@ AS assets
RUN mkdir -p /out/nested && echo asset > /out/nested/a.txt && ln -s nested/a.txt /out/link

FROM @@BASE@@ AS app
ARG TAG
ARG LOCAL=local
ENV SEEN="tag=\${TAG} global=\${GLOBAL} local=\${LOCAL}"
COPY --from=assets /out/ /srv/
RUN echo "$SEEN" > /srv/seen.txt

FROM app AS parent
ONBUILD RUN echo triggered > /srv/onbuild.txt
ONBUILD ENV FROM_TRIGGER=yes

FROM parent
LABEL stage=final
WORKDIR /srv
CMD ["cat", "seen.txt"]
`,
  },
  'add-archive-and-dockerignore': {
    dockerfile: `FROM @@BASE@@
ADD payload.tar.gz /payload/
COPY . /ctx/
RUN rm -rf /ctx/Dockerfile
`,
    files: { 'keep.txt': 'keep\n', 'skip.log': 'skip\n', '.dockerignore': '*.log\n' },
  },
  // Symlinked sources are followed inside the context (an absolute target is taken from the
  // context's root); symlinks inside a copied directory stay symlinks.
  'symlinked-sources': {
    dockerfile: `FROM @@BASE@@
COPY link.txt /x
COPY dirlink /d/
COPY abs/sub/b.txt /b
COPY w*.txt /w/
COPY real/ /tree/
`,
    files: { 'real/a.txt': 'A\n', 'real/sub/b.txt': 'B\n' },
    links: { 'link.txt': 'real/a.txt', dirlink: 'real', abs: '/real', 'w1.txt': '/real/a.txt', 'real/inner': 'a.txt' },
  },
};

const CONFIG_FIELDS: Array<keyof ContainerConfig> = [
  'Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Volumes', 'Labels', 'StopSignal', 'Healthcheck', 'OnBuild', 'Shell',
];

/** path → "type mode uid:gid size sha256|target" for every entry under `root`. */
function tree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const abs = join(root, p);
      const st = lstatSync(abs);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[p] = `link ${readlinkSync(abs)}`;
      else if (st.isDirectory()) {
        out[p] = `dir ${mode}`;
        walk(p);
      } else out[p] = `file ${mode} ${createHash('sha256').update(readFileSync(abs)).digest('hex')}`;
    }
  };
  walk('');
  return out;
}

function tool(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

describe.skipIf(Boolean(skipReason))(`differential: builder vs BuildKit${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let registry: Awaited<ReturnType<typeof startRegistry>>;
  let base: string;
  let work: string;
  const images: string[] = [];

  beforeAll(async () => {
    registry = await startRegistry();
    base = (await pushBusyboxImage(registry.host)).ref;
    work = await mkdtemp(join(tmpdir(), 'builder-diff-'));
  });

  afterAll(async () => {
    for (const img of images) spawnSync(DOCKER, ['rmi', '-f', img]);
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function unpack(archive: string, transport: 'oci-archive' | 'docker-archive', name: string): Promise<string> {
    const layout = join(work, `${name}-layout`);
    const out = join(work, `${name}-rootfs`);
    tool('skopeo', ['copy', '--quiet', `${transport}:${archive}`, `oci:${layout}:img`]);
    tool('umoci', ['unpack', '--rootless', '--image', `${layout}:img`, out]);
    return join(out, 'rootfs');
  }

  for (const [name, spec] of Object.entries(CASES)) {
    it(`${name}: same config and same filesystem`, async () => {
      const ctx = join(work, name);
      await mkdir(ctx, { recursive: true });
      await writeFile(join(ctx, 'Dockerfile'), spec.dockerfile.replaceAll('@@BASE@@', base));
      for (const [file, content] of Object.entries(spec.files ?? {})) {
        await mkdir(join(ctx, file, '..'), { recursive: true });
        await writeFile(join(ctx, file), content);
      }
      for (const [file, target] of Object.entries(spec.links ?? {})) await symlink(target, join(ctx, file));
      if (name.startsWith('add-archive')) {
        await mkdir(join(ctx, 'payload-src/sub'), { recursive: true });
        await writeFile(join(ctx, 'payload-src/sub/x.txt'), 'x\n');
        tool('tar', ['--owner=0', '--group=0', '-czf', join(ctx, 'payload.tar.gz'), '-C', join(ctx, 'payload-src'), '.']);
        await rm(join(ctx, 'payload-src'), { recursive: true });
      }

      // BuildKit
      const tag = `builder-diff/${name}:test`;
      images.push(tag);
      tool(DOCKER, ['build', '--network=none', '-q', '-t', tag, ctx], { DOCKER_BUILDKIT: '1' });
      const dockerTar = join(work, `${name}-docker.tar`);
      tool(DOCKER, ['save', '-o', dockerTar, tag]);
      const dockerConfig = (JSON.parse(tool(DOCKER, ['image', 'inspect', tag])) as Array<{ Config: ContainerConfig }>)[0]!.Config;

      // builder
      const ociTar = join(work, `${name}-builder.tar`);
      const result = await build({ context: ctx, root: join(work, 'root'), network: 'none', outputs: [{ type: 'oci', dest: ociTar }], tags: [`diff-${name}:test`] });

      for (const field of CONFIG_FIELDS) {
        const ours = result.config.config?.[field];
        const theirs = dockerConfig[field];
        const empty = (v: unknown) => v === undefined || v === null || v === '' || (typeof v === 'object' && Object.keys(v as object).length === 0);
        if (empty(ours) && empty(theirs)) continue;
        expect(ours, `config field ${field}`).toEqual(theirs);
      }
      const ourTree = tree(await unpack(ociTar, 'oci-archive', `${name}-ours`));
      const theirTree = tree(await unpack(dockerTar, 'docker-archive', `${name}-theirs`));
      expect(ourTree).toEqual(theirTree);
      expect(JSON.parse(await readFile(join(work, `${name}-ours-layout`, 'index.json'), 'utf8'))).toBeTruthy();
    });
  }
});

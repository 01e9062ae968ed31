// Every instruction and flag that Docker 20.10's built-in Dockerfile frontend accepts, built by
// BuildKit (inside dockerd) and by builder: the whole image config (top-level fields, each
// history entry, every config field) and the filesystem (modes, owners, link targets, contents,
// and mtimes of files taken from the context or a URL) must be the same.
//
// What Docker 20.10's frontend refuses without `# syntax=` (checked on it): heredocs, RUN
// --network, RUN --security, COPY --link. RUN --mount is compared on targets the image has:
// Docker 20.10 leaves an empty stub for a target it had to create, current BuildKit (and builder)
// do not.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBuildFixture } from '../helpers/fixture.js';
import { DOCKER, compareBuilds, dockerSkipReason, writeContext, type DiffCase } from '../helpers/differential.js';

const skipReason = dockerSkipReason();
if (skipReason) console.warn(`differential tests against BuildKit skipped: ${skipReason}`);

/** Served at `@@URL@@/remote.txt`; BuildKit gives the file the Last-Modified time. */
const REMOTE = { body: 'fetched over http\n', lastModified: 'Tue, 02 Feb 2021 03:04:05 GMT' };

const CASES: Record<string, DiffCase> = {
  'named-dockerfile-and-its-dockerignore': {
    dockerfile: `FROM @@BASE@@
COPY . /ctx/
`,
    dockerfileName: 'app.Dockerfile',
    files: { 'app.Dockerfile.dockerignore': 'skip.txt\n', '.dockerignore': 'keep.txt\n', 'skip.txt': 'skip\n', 'keep.txt': 'keep\n' },
    mtimes: ['/ctx/'],
  },
  'run-mounts-bind-cache-tmpfs': {
    dockerfile: `FROM @@BASE@@ AS gen
RUN mkdir /out && echo generated > /out/g.txt
FROM @@BASE@@
WORKDIR /src
RUN --mount=type=bind,target=. cat a.txt > /from-context && ls -A > /context-listing
RUN --mount=type=bind,from=gen,source=/out,target=/home/app cat /home/app/g.txt > /from-stage
RUN --mount=type=cache,target=/root echo cached > /root/log && cat /root/log > /cache-seen
RUN --mount=type=tmpfs,target=/tmp touch /tmp/gone && ls -A /tmp > /tmp-listing
RUN --mount=type=bind,source=sub,target=/home/app,rw echo scribble > /home/app/b.txt && cat /home/app/b.txt > /rw-seen
`,
    files: { 'a.txt': 'from the context\n', 'sub/b.txt': 'bound\n', 'skip.log': 'ignored\n', '.dockerignore': '*.log\n' },
  },
  'metadata-instructions': {
    dockerfile: `FROM @@BASE@@
MAINTAINER Jane Doe <jane@example.com>
LABEL a=1 "b c"="d e" multi="x \\
  y"
LABEL legacy form with spaces
ENV PORT=8080
EXPOSE 80 443/tcp 53/udp 7000-7002 9000/sctp \${PORT}/tcp
ENV LEGACY the whole rest
ENV K1=v1 K2="v 2" K3=$K1-\${K2}
VOLUME /data /logs
VOLUME ["/json"]
USER app:app
STOPSIGNAL 9
HEALTHCHECK --interval=5s --timeout=2s --start-period=1s --retries=4 CMD wget -q localhost || exit 1
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/bin/echo"]
CMD ["hello"]
`,
  },
  'cmd-entrypoint-shell-form': {
    dockerfile: `FROM @@BASE@@ AS first
CMD echo "shell form" $HOME
ENTRYPOINT echo entry

FROM first
# An ENTRYPOINT resets the CMD this stage inherited.
ENTRYPOINT ["/bin/sh", "-c", "echo $0"]
`,
  },
  'healthcheck-json-then-none': {
    dockerfile: `FROM @@BASE@@ AS checked
HEALTHCHECK --interval=1m --timeout=10s --retries=2 CMD ["wget", "-q", "-O-", "http://localhost/"]

FROM checked
HEALTHCHECK NONE
`,
  },
  'run-forms-args-shell': {
    dockerfile: `ARG GLOBAL=global-default
FROM @@BASE@@
ARG GLOBAL
ARG FROM_CLI=default
ARG UNSET
ENV E=e
RUN echo "$GLOBAL $FROM_CLI [$UNSET] $E" > /args.txt
RUN ["/bin/sh", "-c", "echo exec-form > /exec.txt"]
RUN ["touch", "/plain"]
SHELL ["/bin/sh", "-e", "-u", "-c"]
RUN echo "\${FROM_CLI}" > /with-shell.txt && mkdir -m 0700 /private && ln -s /args.txt /args.link
`,
    buildArgs: { FROM_CLI: 'from-cli' },
  },
  // TARGETPLATFORM is linux/amd64 (no variant) on an amd64 host, as Docker gives it.
  'platform-args-in-run-and-label': {
    dockerfile: `FROM --platform=$BUILDPLATFORM @@BASE@@
ARG TARGETPLATFORM
ARG TARGETOS
ARG TARGETARCH
ARG TARGETVARIANT
ARG BUILDPLATFORM
ARG BUILDOS
ARG BUILDARCH
ARG BUILDVARIANT
RUN echo "$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT|$BUILDPLATFORM|$BUILDOS|$BUILDARCH|$BUILDVARIANT" > /platform.txt
LABEL target=$TARGETPLATFORM os=$TARGETOS arch=$TARGETARCH variant=x$TARGETVARIANT build=$BUILDPLATFORM
`,
  },
  'copy-flags': {
    dockerfile: `FROM @@BASE@@ AS src
RUN mkdir -p /out/d && echo s > /out/d/s.txt && ln -s d/s.txt /out/l && chmod 0640 /out/d/s.txt

FROM @@BASE@@
COPY --from=src /out/ /from-stage/
COPY --from=0 /out/d/s.txt /from-index.txt
COPY --from=@@BASE@@ /etc/group /from-image-group
COPY --chown=app:app app/a.txt /chown-name/
COPY --chown=1000:1000 app/ /chown-id/
COPY --chown=app app/a.txt /chown-user-only
COPY --chmod=0640 app/a.txt /chmod/
COPY --chmod=755 app /chmod-dir/
COPY app/*.txt /wild/
COPY app/sub /sub-contents
COPY app /whole-dir/
COPY run.sh app/b.txt /two/
`,
    files: { 'app/a.txt': 'a\n', 'app/b.txt': 'b\n', 'app/sub/c.txt': 'c\n', 'app/sub/deeper/d.md': 'd\n', 'run.sh': '#!/bin/sh\necho run\n' },
    links: { 'app/link-to-a': 'a.txt' },
    modes: { 'run.sh': 0o755, 'app/b.txt': 0o600, 'app/sub': 0o750 },
    mtimes: ['/chown-', '/wild/', '/sub-contents/', '/whole-dir/', '/two/'],
  },
  // (ADD --chown of a local archive is left out: Docker 20.10's BuildKit ignores --chown for the
  // extracted files, a bug later BuildKit fixed; builder applies it, as BuildKit does today.)
  'add-sources': {
    dockerfile: `FROM @@BASE@@
ADD plain.txt /added/
ADD payload.tar.gz /extracted/
ADD @@URL@@/remote.txt /remote/
ADD @@URL@@/remote.txt /remote-named.txt
ADD --chown=app:app --chmod=600 plain.txt /added-flags.txt
`,
    files: { 'plain.txt': 'plain\n' },
    tarballs: { 'payload.tar.gz': { 'top.txt': 'top\n', 'sub/x.txt': 'x\n' } },
    mtimes: ['/added', '/extracted', '/remote'],
  },
  'workdir-user': {
    dockerfile: `FROM @@BASE@@
ENV BASE_DIR=/srv
WORKDIR $BASE_DIR
WORKDIR app/./nested/
RUN pwd > /pwd.txt
USER app
WORKDIR /home/app/made-as-app
RUN touch mine
USER 1000:1000
WORKDIR /made-as-uid
USER root
WORKDIR /
`,
  },
  // BuildKit keeps what a step writes under a VOLUME (the classic builder dropped it).
  // (ADD --chmod of a URL is left out: Docker 20.10's BuildKit ignores the mode, leaving 0600, a
  // bug later BuildKit fixed; builder applies it.)
  'volume-then-write': {
    dockerfile: `FROM @@BASE@@
VOLUME /data
RUN mkdir -p /data/sub && echo kept > /data/file
ADD @@URL@@/remote.txt /data/sub/
COPY --chown=app:app keep.txt /data/
`,
    files: { 'keep.txt': 'keep\n' },
    mtimes: ['/data/keep.txt', '/data/sub/'],
  },
  'escape-directive': {
    dockerfile: [
      '# escape=`',
      'FROM @@BASE@@',
      'ENV WINPATH=C:\\Users\\app',
      'RUN echo "one" `',
      '    "two" > /joined.txt',
      'LABEL path=$WINPATH',
      '',
    ].join('\n'),
  },
  'onbuild-triggers-run-by-child': {
    dockerfile: `FROM @@BASE@@ AS parent
ONBUILD RUN echo triggered > /onbuild.txt
ONBUILD ENV FROM_TRIGGER=yes
ONBUILD LABEL from.trigger=yes
ONBUILD COPY trigger/ /from-trigger/

FROM parent
ONBUILD RUN echo grandchild-only
`,
    files: { 'trigger/copied.txt': 'copied by a trigger\n' },
    mtimes: ['/from-trigger/'],
  },
  'target-dockerignore-label-flag': {
    dockerfile: `FROM @@BASE@@ AS base
COPY . /ctx/

FROM base AS mid
RUN find /ctx | sort > /listing.txt
LABEL from.dockerfile=kept overridden=by-dockerfile

FROM mid AS final
RUN false
`,
    files: {
      '.dockerignore': '*.log\n!keep.log\n**/*.tmp\nsecret/\n',
      'a.log': 'a\n',
      'keep.log': 'keep\n',
      'sub/x.tmp': 'x\n',
      'sub/y.txt': 'y\n',
      'secret/key': 'k\n',
    },
    target: 'mid',
    labels: { overridden: 'by --label', 'only.cli': 'yes' },
    mtimes: ['/ctx/'],
  },
};

describe.skipIf(Boolean(skipReason))(`Dockerfile instructions: builder vs BuildKit${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const fixture = useBuildFixture('diff-instructions');
  const images: string[] = [];
  let server: Server;
  let url: string;

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url !== '/remote.txt') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'text/plain', 'last-modified': REMOTE.lastModified }).end(REMOTE.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const img of images) spawnSync(DOCKER, ['rmi', '-f', img]);
    await new Promise((resolve) => server?.close(resolve));
  });

  for (const [name, spec] of Object.entries(CASES)) {
    it(`${name}: same config and filesystem`, async () => {
      const ctx = join(fixture.work, name);
      await writeContext(ctx, spec, fixture.base, { '@@URL@@': url });
      const diff = await compareBuilds(ctx, spec, { work: fixture.work, name, root: join(fixture.work, 'root'), images });
      expect([...diff.config, ...diff.filesystem]).toEqual([]);
      // Guards against comparing two empty images.
      expect(diff.theirs.tree.size).toBeGreaterThan(100);
      expect(diff.theirs.config.history?.length).toBeGreaterThan(2);
    }, 120_000);
  }
});

// A busybox image that also holds the host's OpenSSH `ssh-add` (with the shared libraries it
// loads), so a build can run `RUN --mount=type=ssh ssh-add -l` against a forwarded agent.
//
//   const reg = await startRegistry();
//   const { ref } = await pushSshImage(reg.host);   // 127.0.0.1:PORT/library/ssh-add:latest
//   // Dockerfile: FROM ${ref}
//   //             RUN --mount=type=ssh ssh-add -l
//
// Needs openssh-client on the host (apt-get install -y openssh-client).

import { access, copyFile, mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BUSYBOX_BIN, BUSYBOX_PATH_ENV, cachedLayout, populateBusybox, pushLayout, sharedLibraries } from './base-image.js';

export const SSH_ADD_BIN = '/usr/bin/ssh-add';

/** The OCI layout (tag `latest`) of busybox plus ssh-add; built once, like busyboxLayout. */
export async function sshAddLayout(): Promise<string> {
  await access(SSH_ADD_BIN).catch(() => {
    throw new Error(`${SSH_ADD_BIN} not found (apt-get install -y openssh-client)`);
  });
  const files = [SSH_ADD_BIN, ...(await sharedLibraries(SSH_ADD_BIN))];
  const inputs = [BUSYBOX_BIN, ...files, ...(await Promise.all([BUSYBOX_BIN, ...files].map((f) => readFile(f))))];
  return cachedLayout({
    name: 'ssh-add',
    inputs,
    async populate(rootfs) {
      await populateBusybox(rootfs);
      // Each file at the path the host loads it from: its content and mode, not a symlink.
      for (const file of files) {
        await mkdir(join(rootfs, dirname(file)), { recursive: true });
        await copyFile(file, join(rootfs, file));
      }
    },
    cmd: ['sh'],
    env: [BUSYBOX_PATH_ENV],
  });
}

/** Pushes the image to `host/repo:tag`; returns its reference and manifest digest. */
export async function pushSshImage(host: string, repo = 'library/ssh-add', tag = 'latest'): Promise<{ ref: string; digest: string }> {
  return pushLayout(await sshAddLayout(), host, repo, tag);
}

// `--chown user:group` resolves against the destination image's own /etc/passwd and /etc/group,
// with USER's rules (src/executor/user.ts) but one difference BuildKit has: a numeric user
// without a group also takes that number as its group (`--chown=1000` is 1000:1000).

import type { Chown } from '../../definition/index.js';
import { resolveUser } from '../../executor/user.js';
import type { Owner } from './copy.js';

export async function resolveOwner(rootfs: string, chown: Chown): Promise<Owner> {
  if (/^\d+$/.test(chown.user) && !chown.group) return { uid: Number(chown.user), gid: Number(chown.user) };
  const { uid, gid } = await resolveUser(rootfs, chown.group ? `${chown.user}:${chown.group}` : chown.user);
  return { uid, gid };
}

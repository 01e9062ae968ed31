// Names in `--chown user:group` resolve against the destination image's own /etc/passwd and
// /etc/group, as Docker does; numeric ids need neither file.

import { readFile } from 'node:fs/promises';
import type { Chown } from '../definition/index.js';
import type { Owner } from './copy.js';
import { secureJoin } from './secure-join.js';

export async function resolveOwner(rootfs: string, chown: Chown): Promise<Owner> {
  const byName = async (file: string, name: string, what: string): Promise<string[]> => {
    let text = '';
    try {
      text = await readFile(await secureJoin(rootfs, file), 'utf8');
    } catch {
      // no such file: every name is unknown
    }
    const fields = text.split('\n').map((l) => l.split(':')).find((f) => f[0] === name);
    if (!fields) throw new Error(`unable to find ${what} ${name}: no matching entries in ${what === 'user' ? 'passwd' : 'group'} file`);
    return fields;
  };
  const isId = (s: string) => /^\d+$/.test(s);
  let uid: number;
  let gid: number;
  if (isId(chown.user)) {
    uid = Number(chown.user);
    gid = uid;
  } else {
    const entry = await byName('/etc/passwd', chown.user, 'user');
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (chown.group !== undefined && chown.group !== '') {
    gid = isId(chown.group) ? Number(chown.group) : Number((await byName('/etc/group', chown.group, 'group'))[2]);
  }
  return { uid, gid };
}

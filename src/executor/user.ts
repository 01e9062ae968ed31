// Docker USER syntax (`''`, name, uid, name:group, uid:gid) resolved against the rootfs's
// /etc/passwd and /etc/group, with runc's rules (libcontainer/user.GetExecUser): numeric ids
// need no entry; names must exist; supplementary groups come from /etc/group unless a group
// was given explicitly.

import { readFileSync } from 'node:fs';
import { resolveInRootSync } from '../util/scoped-path.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** Home directory from passwd ('/' when unknown): the default HOME. */
  home: string;
}

export class UserLookupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserLookupError';
  }
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export async function resolveUser(rootfs: string, user: string): Promise<ResolvedUser> {
  const colon = user.indexOf(':');
  const userArg = colon < 0 ? user : user.slice(0, colon);
  const groupArg = colon < 0 ? '' : user.slice(colon + 1);
  const passwd = await readPasswd(rootfs);

  let entry: PasswdEntry | undefined;
  let uid: number;
  if (userArg === '' || isId(userArg)) {
    uid = userArg === '' ? 0 : parseId(userArg, 'user');
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === userArg);
    if (!entry) throw new UserLookupError(`unable to find user ${userArg}: no matching entries in passwd file`);
    uid = entry.uid;
  }
  let gid = entry?.gid ?? 0;
  let additionalGids: number[] = [];

  if (groupArg !== '' || entry) {
    const groups = await readGroup(rootfs);
    if (groupArg !== '') {
      if (isId(groupArg)) {
        gid = parseId(groupArg, 'group');
      } else {
        const g = groups.find((x) => x.name === groupArg);
        if (!g) throw new UserLookupError(`unable to find group ${groupArg}: no matching entries in group file`);
        gid = g.gid;
      }
    } else if (entry) {
      const name = entry.name;
      additionalGids = [...new Set(groups.filter((g) => g.members.includes(name) && g.gid !== gid).map((g) => g.gid))];
    }
  }
  return { uid, gid, additionalGids, home: entry?.home || '/' };
}

function isId(s: string): boolean {
  return /^\d+$/.test(s);
}

function parseId(s: string, what: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n > 0x7fffffff) throw new UserLookupError(`invalid ${what} id ${s}`);
  return n;
}

async function readEtc(rootfs: string, file: string): Promise<string[]> {
  try {
    const text = readFileSync(resolveInRootSync(rootfs, `/etc/${file}`), 'utf8');
    return text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return [];
    throw err;
  }
}

async function readPasswd(rootfs: string): Promise<PasswdEntry[]> {
  const out: PasswdEntry[] = [];
  for (const line of await readEtc(rootfs, 'passwd')) {
    const [name, , uid, gid, , home] = line.split(':');
    if (!name || !uid || !isId(uid) || !gid || !isId(gid)) continue;
    out.push({ name, uid: Number(uid), gid: Number(gid), home: home ?? '' });
  }
  return out;
}

async function readGroup(rootfs: string): Promise<GroupEntry[]> {
  const out: GroupEntry[] = [];
  for (const line of await readEtc(rootfs, 'group')) {
    const [name, , gid, members] = line.split(':');
    if (!name || !gid || !isId(gid)) continue;
    out.push({ name, gid: Number(gid), members: (members ?? '').split(',').map((m) => m.trim()).filter(Boolean) });
  }
  return out;
}

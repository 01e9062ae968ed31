// RUN --mount for one container: the OCI mounts a RunSpec's ContainerMounts become, the secret
// files and agent sockets they need in the bundle, and the in-memory bundle that keeps secrets
// off the disks. Option sets follow BuildKit's (solver/llbsolver/mounts, session/sshforward).

import { chmodSync, chownSync, closeSync, openSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join, posix } from 'node:path';
import type { Duplex } from 'node:stream';
import { mountAll } from '../snapshotter/mount.js';
import type { AgentConnector, ContainerMount } from './runc.js';
import type { OciMount } from './spec.js';

/** True when the run puts secret bytes in its bundle (files or config.json's env). */
export function hasSecrets(mounts: readonly ContainerMount[], secretEnv: readonly string[]): boolean {
  return secretEnv.length > 0 || mounts.some((m) => m.type === 'secret');
}

/**
 * Makes `bundle` (an empty directory) a tmpfs only its owner can enter, so what is written there
 * (secret files, config.json with secret env) stays in memory, and never in swap where the kernel
 * can refuse it (`noswap`, Linux 6.4). Big enough for the secrets plus config.json, whose JSON
 * escapes can make an env value up to six times longer.
 */
export async function mountMemoryBundle(bundle: string, mounts: readonly ContainerMount[], secretEnv: readonly string[]): Promise<void> {
  let bytes = 1 << 20;
  for (const m of mounts) if (m.type === 'secret') bytes += m.data.length;
  for (const e of secretEnv) bytes += 6 * Buffer.byteLength(e);
  const options = ['mode=0700', `size=${bytes}`, 'nodev', 'nosuid'];
  try {
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', options: [...options, 'noswap'] }], bundle);
  } catch {
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', options }], bundle);
  }
}

/** The OCI mounts of a run, and the agent sockets served for it until close(). */
export interface PreparedMounts {
  mounts: OciMount[];
  close(): Promise<void>;
}

/** Writes the secret files and opens the agent sockets `mounts` need in `bundle`. */
export async function prepareMounts(bundle: string, mounts: readonly ContainerMount[]): Promise<PreparedMounts> {
  const oci: OciMount[] = [];
  const agents: AgentSocket[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(agents.map((a) => a.close()));
  };
  try {
    for (const [i, m] of mounts.entries()) {
      const destination = posix.resolve('/', m.target);
      switch (m.type) {
        case 'bind':
          oci.push({ destination, type: 'bind', source: m.source, options: m.readonly ? ['rbind', 'ro'] : ['rbind'] });
          break;
        case 'tmpfs':
          oci.push({ destination, type: 'tmpfs', source: 'tmpfs', options: m.size ? ['nosuid', `size=${m.size}`] : ['nosuid'] });
          break;
        case 'secret': {
          const source = join(bundle, `secret-${i}`);
          writeFileSync(source, m.data, { mode: 0o600 });
          chownSync(source, m.uid, m.gid);
          chmodSync(source, m.mode & 0o777);
          const noexec = (m.mode & 0o111) === 0 ? ['noexec'] : [];
          oci.push({ destination, type: 'bind', source, options: ['rbind', 'ro', 'nodev', 'nosuid', ...noexec] });
          break;
        }
        case 'ssh': {
          const agent = await AgentSocket.listen(bundle, `agent-${i}.sock`, m.agent);
          agents.push(agent);
          chownSync(agent.path, m.uid, m.gid);
          chmodSync(agent.path, m.mode & 0o777);
          oci.push({ destination, type: 'bind', source: agent.path, options: ['rbind'] });
          break;
        }
      }
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { mounts: oci, close };
}

/** A unix socket whose every connection is piped, both ways, to a new connection to an agent. */
class AgentSocket {
  private readonly open = new Set<Socket | Duplex>();

  private constructor(
    readonly path: string,
    private readonly server: Server,
  ) {}

  static async listen(dir: string, name: string, agent: AgentConnector): Promise<AgentSocket> {
    const server = createServer({ allowHalfOpen: true });
    const socket = new AgentSocket(join(dir, name), server);
    server.on('connection', (conn) => socket.forward(conn, agent));
    // A socket path holds at most 107 bytes, less than a state directory's path may take:
    // bind through this process's descriptor of the directory instead.
    const fd = openSync(dir, 'r');
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(`/proc/self/fd/${fd}/${name}`, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      closeSync(fd);
    }
    return socket;
  }

  /** Stops listening and cuts every connection still open. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.open) s.destroy();
    await closed;
  }

  private forward(conn: Socket, agent: AgentConnector): void {
    let upstream: Duplex;
    try {
      upstream = agent.connect();
    } catch {
      conn.destroy();
      return;
    }
    this.open.add(conn);
    this.open.add(upstream);
    const fail = (): void => {
      conn.destroy();
      upstream.destroy();
    };
    conn.on('error', fail);
    upstream.on('error', fail);
    // Each direction ends the other's writing side when it ends (pipe), so a client that shuts
    // down its side still gets the agent's answer.
    conn.pipe(upstream);
    upstream.pipe(conn);
    conn.on('close', () => {
      this.open.delete(conn);
      upstream.destroy();
    });
    upstream.on('close', () => {
      this.open.delete(upstream);
      conn.end();
    });
  }
}

// The SSH agents a build was given (`--ssh`, RUN --mount=type=ssh), served as BuildKit's
// sshprovider serves them. An agent socket of the caller's is forwarded read-only: a step can list
// keys and sign, never add, remove or lock the caller's keys. Private key files are held by an
// agent served in this process (ssh2 parses the keys and speaks the agent protocol); encrypted
// keys are refused, as in BuildKit, since a build cannot ask for a passphrase.

import { stat } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { Duplex } from 'node:stream';
import type { ParsedKey } from 'ssh2';
import type { AgentConnector } from '../executor/runc.js';
import { readRegularFile } from '../util/read-file.js';
import type { SshProvider } from '../solver/solver.js';

/** The agent a `--ssh` flag or a `type=ssh` mount names when it gives no id. */
export const DEFAULT_SSH_ID = 'default';

/** One agent of the build, as an embedder passes it or `--ssh` gives it. */
export interface SshSpec {
  id: string;
  /** Empty: the caller's `SSH_AUTH_SOCK`. Otherwise one agent socket, or private key files. */
  paths: string[];
}

/**
 * docker buildx's `--ssh` value: `ID` (the caller's SSH_AUTH_SOCK), `ID=SOCKET` or
 * `ID=KEYFILE[,KEYFILE…]`; an empty ID is `default`, as in buildx.
 */
export function parseSshFlag(value: string): SshSpec {
  if (value === '') throw new Error('--ssh needs a value: default, default=SOCKET or ID=KEYFILE[,KEYFILE…]');
  const eq = value.indexOf('=');
  const id = (eq < 0 ? value : value.slice(0, eq)) || DEFAULT_SSH_ID;
  if (eq < 0 || eq === value.length - 1) return { id, paths: [] };
  const paths = value.slice(eq + 1).split(',');
  if (paths.includes('')) throw new Error(`--ssh ${value}: empty path in the list (ID=SOCKET or ID=KEYFILE[,KEYFILE…])`);
  return { id, paths };
}

/** The build's agents by id: what RUN --mount=type=ssh steps connect to. */
export class SshAgents implements SshProvider {
  private readonly live = new Set<Duplex>();

  private constructor(private readonly agents: Map<string, AgentSource>) {}

  /**
   * Checks every agent before the build starts (a socket must accept a connection, key files
   * must hold unencrypted private keys), so a bad `--ssh` fails naming its id and path.
   */
  static async open(specs: readonly SshSpec[], env: NodeJS.ProcessEnv = process.env): Promise<SshAgents> {
    const agents = new Map<string, AgentSource>();
    for (const spec of specs) {
      const id = spec.id || DEFAULT_SSH_ID;
      if (agents.has(id)) throw new Error(`ssh agent "${id}" is given twice`);
      agents.set(id, await openSource(id, spec.paths, env));
    }
    return new SshAgents(agents);
  }

  get(id: string): AgentConnector | undefined {
    const source = this.agents.get(id);
    if (!source) return undefined;
    return {
      connect: () => {
        if (!this.agents.has(id)) throw new Error(`ssh agent "${id}" is closed`);
        const stream = source.connect();
        this.live.add(stream);
        stream.once('close', () => this.live.delete(stream));
        return stream;
      },
    };
  }

  /** Ends open agent connections and drops the keys held in memory. */
  close(): void {
    for (const stream of this.live) stream.destroy();
    this.live.clear();
    for (const source of this.agents.values()) source.release();
    this.agents.clear();
  }
}

interface AgentSource {
  connect(): Duplex;
  release(): void;
}

/** BuildKit reads at most this much of a key file; more is not a key. */
const MAX_KEY_FILE = 100 * 1024;
/** How long the up-front check waits for an agent socket to accept (BuildKit's dial timeout). */
const CONNECT_TIMEOUT_MS = 2000;

async function openSource(id: string, paths: readonly string[], env: NodeJS.ProcessEnv): Promise<AgentSource> {
  if (paths.length === 0) {
    const sock = env.SSH_AUTH_SOCK;
    if (!sock) throw new Error(`ssh agent "${id}": SSH_AUTH_SOCK is not set (start ssh-agent, or pass --ssh ${id}=SOCKET|KEYFILE)`);
    paths = [sock];
  }
  const sockets: string[] = [];
  const keyFiles: string[] = [];
  for (const given of paths) {
    const path = resolve(given);
    const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`ssh agent "${id}": ${given}: ${err.code === 'ENOENT' ? 'no such file or socket' : err.message}`);
    });
    if (info.isSocket()) sockets.push(path);
    else if (info.isFile()) keyFiles.push(path);
    else throw new Error(`ssh agent "${id}": ${given} is neither an agent socket nor a private key file`);
  }
  const socket = sockets[0];
  if (socket !== undefined) {
    if (paths.length > 1) throw new Error(`ssh agent "${id}": give one agent socket or private key files, not ${paths.join(',')}`);
    await probeSocket(id, socket);
    return { connect: () => new ReadOnlyAgentConnection(id, socket), release: () => {} };
  }

  const { default: ssh2 } = await import('ssh2');
  const keys: ParsedKey[] = [];
  for (const path of keyFiles) keys.push(...parseKeyFile(id, path, await readKeyFile(id, path), ssh2.utils.parseKey));
  return {
    connect: () => serveKeys(new ssh2.AgentProtocol(false), keys),
    release: () => {
      keys.length = 0;
    },
  };
}

async function probeSocket(id: string, path: string): Promise<void> {
  await new Promise<void>((done, fail) => {
    const sock = netConnect(path);
    const timer = setTimeout(() => sock.destroy(new Error(`no answer in ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      done();
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      fail(new Error(`ssh agent "${id}": cannot connect to ${path}: ${err.message}`));
    });
  });
}

async function readKeyFile(id: string, path: string): Promise<Buffer> {
  return readRegularFile(path, MAX_KEY_FILE).catch((err: Error) => {
    throw new Error(`ssh agent "${id}": ${path}: ${err.message}`);
  });
}

function parseKeyFile(id: string, path: string, data: Buffer, parseKey: (data: Buffer) => ParsedKey | ParsedKey[] | Error): ParsedKey[] {
  const parsed = parseKey(data);
  if (parsed instanceof Error) {
    if (/passphrase|encrypted/i.test(parsed.message)) {
      throw new Error(
        `ssh agent "${id}": ${path} is an encrypted private key; builder cannot ask for its passphrase: add it to an ssh-agent (ssh-add ${path}) and pass --ssh ${id}=$SSH_AUTH_SOCK`,
      );
    }
    throw new Error(`ssh agent "${id}": ${path} is not an SSH private key (${parsed.message})`);
  }
  // An OpenSSH key file may hold several keys.
  const keys = Array.isArray(parsed) ? parsed : [parsed];
  for (const key of keys) {
    if (!key.isPrivateKey()) throw new Error(`ssh agent "${id}": ${path} is a public key: pass the private key file`);
    if (key.type === 'ssh-dss') throw new Error(`ssh agent "${id}": ${path} is a DSA key, which builder's agent does not sign with`);
  }
  return keys;
}

type AgentProtocol = InstanceType<typeof import('ssh2').AgentProtocol>;

/** Serves `keys` on `agent`: listing and signing; ssh2 answers any other request with a failure. */
function serveKeys(agent: AgentProtocol, keys: readonly ParsedKey[]): Duplex {
  agent.on('identities', (req) => agent.getIdentitiesReply(req, [...keys]));
  agent.on('sign', (req, pubKey, data, options) => {
    const wanted = pubKey.getPublicSSH();
    const key = keys.find((k) => k.getPublicSSH().equals(wanted));
    // ssh2's sign returns an Error rather than throwing, whatever its type says.
    const signature: Buffer | Error | undefined = key?.sign(data, options.hash);
    if (!key || !signature || signature instanceof Error) return agent.failureReply(req);
    agent.signReply(req, key.type.startsWith('ecdsa-') ? ecdsaSignatureBlob(signature) : signature);
  });
  return agent;
}

/**
 * An ECDSA signature as SSH carries it (RFC 5656: mpint r, mpint s) from the DER SEQUENCE of two
 * INTEGERs that OpenSSL returns; a DER INTEGER's content is already an mpint's bytes.
 */
function ecdsaSignatureBlob(der: Buffer): Buffer {
  let pos = 0;
  const header = (tag: number): number => {
    if (der[pos++] !== tag) throw new Error('malformed ECDSA signature');
    let len = der[pos++] ?? 0;
    if (len & 0x80) {
      const bytes = len & 0x7f;
      len = der.readUIntBE(pos, bytes);
      pos += bytes;
    }
    return len;
  };
  header(0x30);
  const parts: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    const len = header(0x02);
    const value = der.subarray(pos, (pos += len));
    const size = Buffer.alloc(4);
    size.writeUInt32BE(value.length);
    parts.push(size, value);
  }
  return Buffer.concat(parts);
}

/** SSH agent protocol message types (draft-miller-ssh-agent). */
const SSH_AGENT_FAILURE = 5;
const SSH_AGENTC_REQUEST_IDENTITIES = 11;
const SSH_AGENTC_SIGN_REQUEST = 13;
/** OpenSSH's agent refuses longer messages (AGENT_MAX_LEN). */
const MAX_AGENT_MESSAGE = 256 * 1024;
const FAILURE_REPLY = Buffer.from([0, 0, 0, 1, SSH_AGENT_FAILURE]);

/**
 * One connection to the caller's agent socket that passes on only key listing and signing
 * requests; any other request (add, remove, lock, extensions) gets a failure reply without
 * reaching the agent, as BuildKit's read-only agent answers. Replies keep the requests' order.
 */
class ReadOnlyAgentConnection extends Duplex {
  private readonly agent: Socket;
  private readonly fromStep = new MessageReader();
  private readonly fromAgent = new MessageReader();
  /** One entry per request not yet answered: true when the agent answers it. */
  private readonly pending: boolean[] = [];

  constructor(id: string, path: string) {
    super();
    this.agent = netConnect(path);
    this.agent.on('data', (chunk: Buffer) => {
      try {
        for (const reply of this.fromAgent.messages(chunk)) {
          if (this.pending.shift() !== true) throw new Error('the agent sent a reply nobody asked for');
          this.push(reply);
          this.answerRefused();
        }
      } catch (err) {
        this.destroy(new Error(`ssh agent "${id}": ${(err as Error).message}`));
      }
    });
    this.agent.on('end', () => this.push(null));
    this.agent.on('error', (err) => this.destroy(new Error(`ssh agent "${id}": ${path}: ${err.message}`)));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    try {
      for (const request of this.fromStep.messages(chunk)) {
        const type = request[4];
        const allowed = type === SSH_AGENTC_REQUEST_IDENTITIES || type === SSH_AGENTC_SIGN_REQUEST;
        this.pending.push(allowed);
        if (allowed) this.agent.write(request);
      }
      this.answerRefused();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _read(): void {}

  override _final(callback: (error?: Error | null) => void): void {
    this.agent.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.agent.destroy();
    callback(error);
  }

  /** Failure replies for refused requests that are next in line. */
  private answerRefused(): void {
    while (this.pending[0] === false) {
      this.pending.shift();
      this.push(FAILURE_REPLY);
    }
  }
}

/** Splits a byte stream into whole agent messages (uint32 length, then type and contents). */
class MessageReader {
  private buffered: Buffer = Buffer.alloc(0);

  *messages(chunk: Buffer): Generator<Buffer> {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    while (this.buffered.length >= 4) {
      const len = this.buffered.readUInt32BE(0);
      if (len === 0 || len > MAX_AGENT_MESSAGE) throw new Error(`agent message of ${len} bytes`);
      if (this.buffered.length < 4 + len) break;
      yield this.buffered.subarray(0, 4 + len);
      this.buffered = this.buffered.subarray(4 + len);
    }
  }
}

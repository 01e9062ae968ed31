// HTTP/1.1 for the registry client, on node:http and node:https rather than undici: Node's own
// stack is part of its start-up snapshot (undici takes 60-90 ms to load, a fifth of a whole
// `pull` of a 100 MB image), and an IncomingMessage delivers bytes with about a third less CPU
// than undici's body stream. Blob downloads go around both (`bulk`, see bulk-get.ts).

import { existsSync, readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { bulkGet } from './bulk-get.js';

/** Where Debian/Ubuntu, Fedora/RHEL, openSUSE and Alpine keep the system CA bundle. */
const SYSTEM_CA_FILES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/ssl/cert.pem',
];

/** undici's defaults: a response (headers or the next body bytes) that stalls this long fails. */
const IDLE_TIMEOUT_MS = 300_000;
/** A body left unread is drained up to this much (keeping the connection), else the connection is dropped. */
const DUMP_LIMIT = 128 * 1024;

export interface HttpRequest {
  method: string;
  headers?: Record<string, string>;
  body?: string | Buffer | Readable;
  /** A GET of a blob to stream: read on a connection of its own, without node:http (see bulk-get.ts). */
  bulk?: boolean;
}

export interface HttpResponse {
  statusCode: number;
  statusText: string;
  headers: IncomingHttpHeaders;
  /** Headers whose repeats are kept apart (several WWW-Authenticate challenges). */
  headersDistinct: NodeJS.Dict<string[]>;
  body: Readable;
  /** Discards the body (draining a small one so its connection is reused). */
  dump(): Promise<void>;
  text(): Promise<string>;
}

export interface HttpTransportOptions {
  /** Concurrent connections per origin. */
  connections?: number;
  /** TLS and socket options for HTTPS connections (ca, lookup, servername, …). */
  connect?: Record<string, unknown>;
}

/** Pooled keep-alive connections for plain and TLS origins. */
export class HttpTransport {
  private readonly http: HttpAgent;
  private readonly https: HttpsAgent;
  private readonly connect: Record<string, unknown>;

  constructor(options: HttpTransportOptions = {}) {
    this.connect = options.connect ?? {};
    const pool = { keepAlive: true, maxSockets: options.connections ?? 16, scheduling: 'lifo' as const };
    // As with undici's `connect`, socket options such as `lookup` apply to plain connections too.
    this.http = new HttpAgent({ ...pool, ...options.connect });
    this.https = new HttpsAgent({ ...pool, ...options.connect });
  }

  request(url: URL, req: HttpRequest): Promise<HttpResponse> {
    const tls = url.protocol === 'https:';
    const headers: Record<string, string> = { ...req.headers };
    const body = req.body;
    if (req.bulk && req.method === 'GET' && body === undefined) {
      return bulkGet(url, headers, this.connect, IDLE_TIMEOUT_MS).then((res) => response(res));
    }
    if ((typeof body === 'string' || Buffer.isBuffer(body)) && headers['content-length'] === undefined) {
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    return new Promise((resolve, reject) => {
      const send = tls ? httpsRequest : httpRequest;
      const r = send(url, { method: req.method, headers, agent: tls ? this.https : this.http, timeout: IDLE_TIMEOUT_MS });
      r.once('timeout', () => r.destroy(Object.assign(new Error(`no answer from ${url.origin} for ${IDLE_TIMEOUT_MS / 1000} s`), { code: 'ETIMEDOUT' })));
      r.once('error', (err) => {
        if (body instanceof Readable) body.destroy();
        reject(err);
      });
      r.once('response', (res: IncomingMessage) => {
        // An early answer (401, an error) to a request whose body is still streaming: the
        // connection is in an unknown state, so it is not reused.
        res.once('end', () => {
          if (!r.writableFinished) r.destroy();
        });
        resolve(response({ statusCode: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers, headersDistinct: res.headersDistinct, body: res }));
      });
      if (body instanceof Readable) {
        body.once('error', (err) => r.destroy(err));
        body.pipe(r);
      } else {
        r.end(body);
      }
    });
  }

  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

function response(head: Omit<HttpResponse, 'dump' | 'text'>): HttpResponse {
  const res = head.body;
  return {
    ...head,
    dump: () =>
      new Promise<void>((resolve) => {
        // Even a complete body (a HEAD's) must be read to its end for the connection to be reused.
        if (res.readableEnded || res.destroyed) return resolve();
        let seen = 0;
        res.on('data', (chunk: Buffer) => {
          seen += chunk.length;
          if (seen > DUMP_LIMIT) res.destroy();
        });
        res.once('end', resolve).once('close', resolve).once('error', () => resolve());
        res.resume();
      }),
    text: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of res) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
  };
}

/**
 * CA certificates for HTTPS: SSL_CERT_FILE when set (as Go and OpenSSL do), else the system
 * bundle. Not node's bundled list nor NODE_EXTRA_CA_CERTS: builder trusts what Docker trusts.
 */
export function trustedCAs(env: NodeJS.ProcessEnv): { ca?: string } {
  const file = env.SSL_CERT_FILE || SYSTEM_CA_FILES.find((f) => existsSync(f));
  if (!file) return {};
  try {
    return { ca: readFileSync(file, 'utf8') };
  } catch (err) {
    if (env.SSL_CERT_FILE) throw new Error(`cannot read SSL_CERT_FILE ${file}: ${(err as Error).message}`);
    return {};
  }
}

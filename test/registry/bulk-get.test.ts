// Blob GETs read without node:http (src/registry/bulk-get.ts), against real servers on
// 127.0.0.1: node's HTTP and HTTPS servers for the framings they produce, and a raw TCP server
// for what they would not send (a body delimited by the connection's end, a cut connection).

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpTransport, trustedCAs } from '../../src/registry/http.js';
import { makeCertificates } from '../helpers/registry.js';

const BLOB = randomBytes(6 * 1024 * 1024 + 333);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let work: string;
let http: Server;
let base: string;
const seen: Array<Record<string, string | string[] | undefined>> = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'builder-bulk-'));
  http = createHttpServer((req, res) => {
    seen.push(req.headers);
    if (req.url === '/length') {
      res.setHeader('Docker-Content-Digest', `sha256:${sha(BLOB)}`);
      res.setHeader('X-Twice', ['a', 'b']);
      res.setHeader('Content-Length', BLOB.length);
      res.end(BLOB);
    } else if (req.url === '/chunked') {
      // No length: node sends it chunked, in pieces of odd sizes.
      let off = 0;
      const next = (): void => {
        if (off >= BLOB.length) return void res.end();
        const n = Math.min(BLOB.length - off, 1 + ((off * 7919) % 300_000));
        res.write(BLOB.subarray(off, off + n));
        off += n;
        setImmediate(next);
      };
      next();
    } else if (req.url === '/missing') {
      res.statusCode = 404;
      res.setHeader('Content-Type', 'application/json');
      res.end('{"errors":[{"code":"BLOB_UNKNOWN"}]}');
    } else {
      res.statusCode = 500;
      res.end();
    }
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => http?.close(resolve));
  if (work) await rm(work, { recursive: true, force: true });
});

async function drain(body: Readable, slowly = false): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    chunks.push(chunk as Buffer);
    n += (chunk as Buffer).length;
    // A reader that falls behind: the socket stops and restarts reading.
    if (slowly && n > 512 * 1024) {
      n = 0;
      await sleep(2);
    }
  }
  return Buffer.concat(chunks);
}

describe('bulk blob GETs', () => {
  const transport = new HttpTransport();
  afterAll(() => transport.close());

  it('streams a Content-Length body byte for byte, with the headers node:http would give', async () => {
    const res = await transport.request(new URL(`${base}/length`), { method: 'GET', headers: { 'user-agent': 'bulk-test', range: 'bytes=0-' }, bulk: true });
    expect(res.statusCode).toBe(200);
    expect(res.statusText).toBe('OK');
    expect(res.headers['docker-content-digest']).toBe(`sha256:${sha(BLOB)}`);
    expect(res.headers['x-twice']).toBe('a, b');
    expect(res.headersDistinct['x-twice']).toEqual(['a', 'b']);
    expect(sha(await drain(res.body, true))).toBe(sha(BLOB));
    expect(seen.at(-1)).toMatchObject({ 'user-agent': 'bulk-test', range: 'bytes=0-', host: base.slice('http://'.length) });
  });

  it('decodes a chunked body, and reads an error answer as text', async () => {
    const res = await transport.request(new URL(`${base}/chunked`), { method: 'GET', bulk: true });
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(sha(await drain(res.body))).toBe(sha(BLOB));
    const missing = await transport.request(new URL(`${base}/missing`), { method: 'GET', bulk: true });
    expect(missing.statusCode).toBe(404);
    expect(await missing.text()).toBe('{"errors":[{"code":"BLOB_UNKNOWN"}]}');
  });

  it('takes a body that ends with the connection (after an interim 103), and fails one cut short as a network error', async () => {
    const half = Math.floor(BLOB.length / 2);
    const raw = createTcpServer((socket) => {
      socket.once('data', (req) => {
        const cut = req.toString('latin1').startsWith('GET /cut ');
        if (req.toString('latin1').startsWith('GET /hints ')) socket.write('HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n');
        socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n${cut ? `Content-Length: ${BLOB.length}\r\n` : ''}\r\n`);
        socket.end(cut ? BLOB.subarray(0, half) : BLOB);
      });
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
    try {
      const whole = await transport.request(new URL(`${origin}/until-close`), { method: 'GET', bulk: true });
      expect(sha(await drain(whole.body))).toBe(sha(BLOB));
      const hinted = await transport.request(new URL(`${origin}/hints`), { method: 'GET', bulk: true });
      expect(hinted.statusCode).toBe(200);
      expect(sha(await drain(hinted.body))).toBe(sha(BLOB));
      const cut = await transport.request(new URL(`${origin}/cut`), { method: 'GET', bulk: true });
      const err = await drain(cut.body).then(() => undefined, (e: NodeJS.ErrnoException) => e);
      expect(err?.code).toBe('ECONNRESET');
      expect(err?.message).toContain(`connection to ${origin} closed before the end of the body`);
    } finally {
      await new Promise((resolve) => raw.close(resolve));
    }
  });

  it('fails a request nobody answers as node would (ECONNREFUSED)', async () => {
    const closed = createTcpServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const err = await transport.request(new URL(`http://127.0.0.1:${port}/x`), { method: 'GET', bulk: true }).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e,
    );
    expect(err?.code).toBe('ECONNREFUSED');
  });

  it('refuses a header value with a line break rather than send the headers it would add', async () => {
    const before = seen.length;
    await expect(
      transport.request(new URL(`${base}/length`), { method: 'GET', headers: { authorization: 'Bearer x\r\nx-injected: 1' }, bulk: true }),
    ).rejects.toThrow('invalid character in header "authorization"');
    expect(seen.length).toBe(before);
  });

  it('reads over TLS, trusting the CA it is given and no other', async () => {
    const certs = join(work, 'certs');
    await mkdir(certs);
    const ca = makeCertificates(certs, 'localhost');
    const tls = createHttpsServer({ key: await readFile(join(certs, 'server.key')), cert: await readFile(join(certs, 'server.crt')) }, (_req, res) => res.end(BLOB));
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    const url = new URL(`https://127.0.0.1:${(tls.address() as AddressInfo).port}/blob`);
    const trusting = new HttpTransport({ connect: trustedCAs({ SSL_CERT_FILE: ca }) });
    try {
      const res = await trusting.request(url, { method: 'GET', bulk: true });
      expect(sha(await drain(res.body, true))).toBe(sha(BLOB));
      await expect(transport.request(url, { method: 'GET', bulk: true })).rejects.toThrow(/self.signed|certificate/i);
    } finally {
      trusting.close();
      await new Promise((resolve) => tls.close(resolve));
    }
  });
});

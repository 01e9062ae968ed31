// A GET whose body is a blob to stream in bulk, on a connection of its own that reads with
// `onread` into 1 MiB slabs. node:http allocates a buffer for each 64 KiB read, then copies the
// body part of it into another in its parser and passes each through a stream: for a 100 MB
// layer that cost more CPU than hashing it. Here a read lands in the slab and goes out as a view
// of it, with nothing to parse once the head is read.
//
// HTTP/1.1 with `Connection: close`: the head is parsed here (status, headers), the body framed
// by Content-Length, chunked transfer coding, or the end of the connection.

import { isIP, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';

const SLAB_BYTES = 1024 * 1024;
/** A read gets at least this much room; a fuller slab is left for a new one. */
const MIN_READ_BYTES = 64 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
/** The body stream buffers this much before the socket stops reading. */
const BODY_HIGH_WATER_MARK = 1024 * 1024;

export interface BulkResponse {
  statusCode: number;
  statusText: string;
  headers: IncomingHttpHeaders;
  headersDistinct: NodeJS.Dict<string[]>;
  body: Readable;
}

/** Network failures carry a code, as node's own do, so callers retry and resume them alike. */
function networkError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

export function bulkGet(url: URL, headers: Record<string, string>, connect: Record<string, unknown>, idleTimeoutMs: number): Promise<BulkResponse> {
  // As node:http refuses them: a line break in a header (a token from a hostile server, say) would add headers.
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n]/.test(name + value)) return Promise.reject(new TypeError(`invalid character in header "${name}"`));
  }
  return new Promise((resolve, reject) => {
    const tls = url.protocol === 'https:';
    const port = Number(url.port) || (tls ? 443 : 80);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    let used = 0;
    const nextBuffer = (): Buffer => {
      if (SLAB_BYTES - used < MIN_READ_BYTES) {
        slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
        used = 0;
      }
      return slab.subarray(used);
    };

    let head: Buffer | undefined = Buffer.alloc(0);
    let body: Readable | undefined;
    let frame: BodyFrame | undefined;
    let ended = false;
    const endBody = (): void => {
      ended = true;
      (body as Readable).push(null);
    };
    const onread = {
      buffer: nextBuffer,
      callback: (n: number, buf: Buffer): boolean => {
        const chunk = buf.subarray(0, n);
        used += n;
        if (head) return readHead(head.length ? Buffer.concat([head, chunk]) : chunk);
        return deliver(chunk);
      },
    };
    /** Bytes up to the end of the head are kept until it is complete; interim (1xx) answers are skipped. */
    const readHead = (all: Buffer): boolean => {
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) {
        if (all.length > MAX_HEAD_BYTES) socket.destroy(networkError(`response head from ${url.origin} is over ${MAX_HEAD_BYTES} bytes`, 'EPROTO'));
        else head = Buffer.from(all);
        return true;
      }
      const parsed = parseHead(all.subarray(0, end).toString('latin1'));
      if (!parsed) {
        socket.destroy(networkError(`malformed response from ${url.origin}`, 'EPROTO'));
        return false;
      }
      if (parsed.statusCode < 200) return readHead(all.subarray(end + 4));
      head = undefined;
      frame = bodyFrame(parsed.statusCode, parsed.headers);
      body = new Readable({
        highWaterMark: BODY_HIGH_WATER_MARK,
        read: () => void socket.resume(),
        destroy: (err, callback) => {
          socket.destroy();
          callback(err);
        },
      });
      resolve({ ...parsed, body });
      return deliver(all.subarray(end + 4));
    };
    /** Passes body bytes on; false (stop reading) while the reader is behind. */
    const deliver = (bytes: Buffer): boolean => {
      const { data, done, error } = (frame as BodyFrame).take(bytes);
      let more = true;
      for (const d of data) more = (body as Readable).push(d) && more;
      if (error) (body as Readable).destroy(networkError(`${error} from ${url.origin}`, 'EPROTO'));
      else if (done) {
        endBody();
        socket.destroy();
      }
      return more;
    };

    // SNI names a host, never an address (RFC 6066), as node's https agent does it.
    const servername = (connect.servername as string | undefined) ?? (isIP(host) ? undefined : host);
    const options = { ...connect, host, port, onread, ...(tls && servername ? { servername } : {}) };
    const socket: Socket = tls ? tlsConnect(options) : netConnect(options);
    socket.setTimeout(idleTimeoutMs, () =>
      socket.destroy(networkError(`no answer from ${url.origin} for ${idleTimeoutMs / 1000} s`, 'ETIMEDOUT')),
    );
    const lines = Object.entries({ host: url.host, ...headers, connection: 'close' }).map(([k, v]) => `${k}: ${v}\r\n`);
    socket.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\n${lines.join('')}\r\n`);
    socket.on('error', (err) => {
      if (!body) reject(err);
      else if (!ended) body.destroy(err);
    });
    socket.on('close', () => {
      if (!body) return reject(networkError(`connection to ${url.origin} closed before an answer`, 'ECONNRESET'));
      if (ended || body.destroyed) return;
      const { done } = (frame as BodyFrame).take(Buffer.alloc(0), true);
      if (done) endBody();
      else body.destroy(networkError(`connection to ${url.origin} closed before the end of the body`, 'ECONNRESET'));
    });
  });
}

function parseHead(text: string): Omit<BulkResponse, 'body'> | undefined {
  const [statusLine, ...lines] = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine ?? '');
  if (!m) return undefined;
  const headers: IncomingHttpHeaders = {};
  const headersDistinct: NodeJS.Dict<string[]> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    (headersDistinct[name] ??= []).push(value);
    const seen = headers[name];
    // As IncomingMessage: repeats joined with ", ", set-cookie kept as a list.
    headers[name] = name === 'set-cookie' ? [...((seen as string[] | undefined) ?? []), value] : seen === undefined ? value : `${seen}, ${value}`;
  }
  return { statusCode: Number(m[1]), statusText: m[2] ?? '', headers, headersDistinct };
}

interface BodyFrame {
  /** The body bytes in `bytes`, and whether the body ended (`atClose`: the connection did). */
  take(bytes: Buffer, atClose?: boolean): { data: Buffer[]; done: boolean; error?: string };
}

function bodyFrame(status: number, headers: IncomingHttpHeaders): BodyFrame {
  if (status === 204 || status === 304) return { take: () => ({ data: [], done: true }) };
  if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) return chunkedFrame();
  const length = headers['content-length'];
  if (length !== undefined) {
    if (!/^\d+$/.test(length)) return { take: () => ({ data: [], done: false, error: `invalid Content-Length "${length}"` }) };
    let left = Number(length);
    return {
      take: (bytes) => {
        const data = bytes.subarray(0, left);
        left -= data.length;
        return { data: data.length ? [data] : [], done: left === 0 };
      },
    };
  }
  return { take: (bytes, atClose) => ({ data: bytes.length ? [bytes] : [], done: Boolean(atClose) }) };
}

/** Transfer-Encoding: chunked, decoded as bytes arrive: `size[;ext]\r\n data \r\n` … `0\r\n` trailers `\r\n`. */
function chunkedFrame(): BodyFrame {
  let line = '';
  let left = 0;
  let state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  return {
    take(bytes) {
      const data: Buffer[] = [];
      let i = 0;
      while (i < bytes.length && state !== 'done') {
        if (state === 'data') {
          const piece = bytes.subarray(i, i + left);
          data.push(piece);
          i += piece.length;
          left -= piece.length;
          if (left === 0) state = 'data-end';
          continue;
        }
        const nl = bytes.indexOf(10, i);
        line += bytes.subarray(i, nl < 0 ? bytes.length : nl + 1).toString('latin1');
        i = nl < 0 ? bytes.length : nl + 1;
        if (nl < 0) {
          if (line.length > 4096) return { data, done: false, error: 'chunk header too long' };
          continue;
        }
        const text = line.trimEnd();
        line = '';
        if (state === 'data-end') {
          if (text !== '') return { data, done: false, error: 'malformed chunked body' };
          state = 'size';
        } else if (state === 'size') {
          const size = /^([0-9a-fA-F]+)(?:;.*)?$/.exec(text)?.[1];
          if (size === undefined) return { data, done: false, error: 'malformed chunk size' };
          left = parseInt(size, 16);
          state = left === 0 ? 'trailer' : 'data';
        } else if (text === '') {
          state = 'done';
        }
      }
      return { data, done: state === 'done' };
    },
  };
}

// ADD <url>: a GET that follows redirects, over the registry client's transport so it trusts the
// same CAs (SSL_CERT_FILE, else the system store), as BuildKit's ADD does.

import { HttpTransport, trustedCAs } from '../registry/http.js';

const MAX_REDIRECTS = 10;

export interface Download {
  status: number;
  statusText: string;
  data: Buffer;
  lastModified?: string;
}

export async function download(url: string, signal?: AbortSignal): Promise<Download> {
  const transport = new HttpTransport({ connect: trustedCAs(process.env) });
  const abort = (): void => transport.close();
  signal?.addEventListener('abort', abort, { once: true });
  try {
    let target = new URL(url);
    for (let redirects = 0; ; redirects++) {
      signal?.throwIfAborted();
      const res = await transport.request(target, { method: 'GET', headers: { 'user-agent': 'builder/0.1' } });
      const location = res.headers.location;
      if (res.statusCode >= 300 && res.statusCode < 400 && location && redirects < MAX_REDIRECTS) {
        await res.dump();
        target = new URL(location, target);
        continue;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of res.body) chunks.push(chunk as Buffer);
      const lastModified = res.headers['last-modified'];
      return { status: res.statusCode, statusText: res.statusText, data: Buffer.concat(chunks), ...(lastModified ? { lastModified } : {}) };
    }
  } catch (err) {
    signal?.throwIfAborted();
    throw err;
  } finally {
    signal?.removeEventListener('abort', abort);
    transport.close();
  }
}

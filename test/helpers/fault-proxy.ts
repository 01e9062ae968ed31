// A TCP proxy on 127.0.0.1 in front of a real registry that relays bytes faithfully and injects
// faults into chosen requests. It reads each request's head (and its Content-Length body) to know
// which request a byte belongs to; responses are relayed untouched unless a fault says otherwise.
//
//   const proxy = await startFaultProxy(reg.host, (req) =>
//     req.method === 'PUT' && req.path.includes('/blobs/uploads/') && req.seen === 1 ? { status: 500 } : undefined);
//   ... point the client at proxy.host ...
//   proxy.log  // every request: method, path, and the fault injected, if any
//   await proxy.close();

import { createServer, connect, type Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';

export interface ProxiedRequest {
  method: string;
  /** Path and query. */
  path: string;
  /** How many requests with this method and path (query excluded) the proxy has seen, this one included. */
  seen: number;
  /** Content-Length of the request body (0 without one). */
  length: number;
}

export type Fault =
  /** Answered by the proxy with this status (then the connection closes); Retry-After when given. */
  | { status: number; retryAfter?: string }
  /** The connection is cut after this many bytes of the request body were relayed. */
  | { cutRequestAfter: number }
  /** The connection is cut after this many bytes of the response were relayed. */
  | { cutResponseAfter: number }
  /** One byte of the request body, at this offset, is flipped on its way. */
  | { flipRequestAt: number }
  /** One byte of the response, at this offset (its head included), is flipped on its way. */
  | { flipResponseAt: number }
  /** Held (nothing relayed) until release() is called. */
  | { stall: true };

export interface FaultProxy {
  host: string;
  log: Array<{ method: string; path: string; fault?: Fault }>;
  /** Relays the requests held by `stall` faults and lets later ones through. */
  release(): void;
  /** Resolves once a request matched a `stall` fault. */
  stalled(): Promise<void>;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string, pick: (req: ProxiedRequest) => Fault | undefined): Promise<FaultProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  const counts = new Map<string, number>();
  const log: FaultProxy['log'] = [];
  const sockets = new Set<Socket>();
  const held: Array<() => void> = [];
  let released = false;
  let onStall: () => void = () => undefined;
  const stalledOnce = new Promise<void>((resolve) => (onStall = resolve));

  const server = createServer((down) => {
    const up = connect(Number(targetPort), targetHost);
    sockets.add(down).add(up);
    const end = (): void => {
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', () => down.end());

    let buffer: Buffer = Buffer.alloc(0);
    let bodyLeft = 0; // bytes of the current request body still to relay
    let bodyOffset = 0;
    let fault: Fault | undefined;
    let waiting = false;
    let responseLeft: number | undefined;
    let responseOffset = 0;

    up.on('data', (raw: Buffer) => {
      let chunk = raw;
      const flip = fault && 'flipResponseAt' in fault ? fault.flipResponseAt - responseOffset : -1;
      responseOffset += chunk.length;
      if (flip >= 0 && flip < chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[flip]! ^= 0xff;
      }
      if (responseLeft === undefined) return void down.write(chunk);
      if (chunk.length <= responseLeft) {
        responseLeft -= chunk.length;
        return void down.write(chunk);
      }
      down.write(chunk.subarray(0, responseLeft));
      end();
    });

    const pump = (): void => {
      while (!waiting && buffer.length > 0) {
        if (bodyLeft > 0) {
          const n = Math.min(bodyLeft, buffer.length);
          if (fault && 'cutRequestAfter' in fault && bodyOffset + n >= fault.cutRequestAfter) {
            up.write(buffer.subarray(0, Math.max(0, fault.cutRequestAfter - bodyOffset)));
            return end();
          }
          let part = buffer.subarray(0, n);
          if (fault && 'flipRequestAt' in fault && bodyOffset <= fault.flipRequestAt && fault.flipRequestAt < bodyOffset + n) {
            part = Buffer.from(part);
            part[fault.flipRequestAt - bodyOffset]! ^= 0xff;
          }
          up.write(part);
          buffer = buffer.subarray(n);
          bodyLeft -= n;
          bodyOffset += n;
          continue;
        }
        const headEnd = buffer.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const head = buffer.subarray(0, headEnd + 4);
        const text = head.toString('latin1');
        const [method = '', path = ''] = (text.split('\r\n')[0] ?? '').split(' ');
        const key = `${method} ${path.split('?')[0]}`;
        const seen = (counts.get(key) ?? 0) + 1;
        counts.set(key, seen);
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
        fault = pick({ method, path, seen, length });
        log.push(fault ? { method, path, fault } : { method, path });
        if (fault && 'status' in fault) {
          const retry = fault.retryAfter !== undefined ? `Retry-After: ${fault.retryAfter}\r\n` : '';
          down.end(`HTTP/1.1 ${fault.status} ${STATUS_CODES[fault.status]}\r\n${retry}Content-Length: 0\r\nConnection: close\r\n\r\n`);
          up.destroy();
          return;
        }
        buffer = buffer.subarray(head.length);
        if (fault && 'stall' in fault && !released) {
          waiting = true;
          held.push(() => {
            waiting = false;
            forward(head, length, undefined);
            pump();
          });
          onStall();
          return;
        }
        forward(head, length, fault);
      }
    };
    const forward = (head: Buffer, length: number, f: Fault | undefined): void => {
      fault = f;
      responseLeft = fault && 'cutResponseAfter' in fault ? fault.cutResponseAfter : undefined;
      responseOffset = 0;
      up.write(head);
      bodyLeft = length;
      bodyOffset = 0;
    };
    down.on('data', (chunk: Buffer) => {
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
      pump();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    host: `127.0.0.1:${port}`,
    log,
    release: () => {
      released = true;
      for (const go of held.splice(0)) go();
    },
    stalled: () => stalledOnce,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

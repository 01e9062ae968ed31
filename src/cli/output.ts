// The command line's text on stdout and stderr. To a pipe, a socket or a file it is written at once
// with write(2): Node's process.stdout for a pipe or socket is a net.Socket, and making one loads
// `net` and its dependencies, a good part of a fully cached build's start-up. A terminal (or
// another character device) gets Node's stream, which knows its width and colours.
//
// Once anything needs the stream itself (a write that would block, an error, a library writing an
// archive or a container's output to process.stdout), every later write goes through that stream
// too, so that the order of the text never changes; errors (EPIPE) then surface as they always
// did, from the stream.

import { fstatSync, writeSync } from 'node:fs';

export class StdioText {
  private stream: NodeJS.WriteStream | undefined;
  private directWrites: boolean | undefined;

  constructor(
    private readonly fd: 1 | 2,
    private readonly nodeStream: () => NodeJS.WriteStream,
  ) {}

  write(text: string): void {
    if (this.stream || !this.direct()) {
      this.handOver().write(text);
      return;
    }
    const bytes = Buffer.from(text);
    let done = 0;
    try {
      while (done < bytes.length) done += writeSync(this.fd, bytes, done);
    } catch {
      // EAGAIN (a non-blocking pipe that is full), EPIPE or anything else: the stream waits for the
      // pipe, or fails as it would have without these direct writes.
      this.handOver().write(bytes.subarray(done));
    }
  }

  /** A terminal: only then does Node's stream exist before it is asked for. */
  get isTTY(): boolean {
    return !this.direct() && this.handOver().isTTY === true;
  }

  get columns(): number | undefined {
    return this.isTTY ? this.handOver().columns : undefined;
  }

  get rows(): number | undefined {
    return this.isTTY ? this.handOver().rows : undefined;
  }

  /** Node's stream (process.stdout or process.stderr), for code that writes to it: this object's later writes go through it too. */
  handOver(): NodeJS.WriteStream {
    this.stream ??= this.nodeStream();
    return this.stream;
  }

  /** Once all that was written has left the process (a stream's writes to a pipe are asynchronous). */
  flushed(): Promise<void> {
    const stream = this.stream;
    if (!stream) return Promise.resolve();
    return new Promise((resolve) => {
      // A reader that went away (EPIPE) has nothing left to wait for.
      stream.once('error', () => resolve());
      stream.write('', () => resolve());
    });
  }

  /** Pipes, sockets and regular files are written directly; anything else (a terminal, /dev/null, a closed fd) through Node's stream. */
  private direct(): boolean {
    if (this.directWrites === undefined) {
      try {
        const stats = fstatSync(this.fd);
        this.directWrites = stats.isFIFO() || stats.isSocket() || stats.isFile();
      } catch {
        this.directWrites = false;
      }
    }
    return this.directWrites;
  }
}

export const stdout = new StdioText(1, () => process.stdout);
export const stderr = new StdioText(2, () => process.stderr);

// Where a layer's entries are written: by the Applier on this thread, or by one writer thread
// that runs the same Applier (apply-worker.ts) in the entries' order.
//
// Creating a file is the kernel's slowest step of an unpack (hundreds of microseconds an inode
// on some filesystems), and a synchronous call holds the thread that makes it. On a writer
// thread, file creation overlaps with what this thread does meanwhile: reading the socket,
// hashing, tar parsing. One thread keeps every rule of the Applier as it is: its calls run in
// layer order, exactly as they would here. Entries and their bytes go over in batches, copied
// into a few reused buffers; at most WRITER_BUFFERS of them are in flight, which bounds memory
// and makes the reader wait for the writer.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Applier, LayerSecurityError, type AppliedState } from './apply-entries.js';
import { mknod } from './fsutil.js';
import type { EntryBody, LayerEntry } from './layer-reader.js';
import type { SnapshotLayout } from './store.js';
import type { Usage } from './types.js';

/** Takes a layer's entries in order. `abort` (after a failure) leaves nothing to clean up. */
export interface LayerWriter {
  write(entry: LayerEntry, body: EntryBody): Promise<void>;
  /**
   * Once every entry is written: sets directory times, and tells the tree's disk use when it
   * could be counted on the way (see Applier.usage); rejects with the writer's error.
   */
  finish(): Promise<Usage | undefined>;
  abort(): Promise<void>;
}

/**
 * The writer thread's script: one bundled file beside the CLI bundle (scripts/bundle.mjs makes
 * it: a thread loads it faster than the modules it is made of), else the compiled module beside
 * this one (dist/snapshotter); none when running from sources. Relative to this module, resolved
 * at first use: a URL made at load costs every start.
 */
const SCRIPTS = ['./apply-worker.cjs', '../snapshotter/apply-worker.js'];
let defaultScript: URL | false | undefined;

function defaultWriterScript(): URL | false {
  defaultScript ??= SCRIPTS.map((relative) => new URL(relative, import.meta.url)).find((url) => existsSync(fileURLToPath(url))) ?? false;
  return defaultScript;
}

/**
 * A writer for `layout`: on a thread of its own (the one held ready, if any) when `script`
 * (default: the one above) exists, else on this thread (running from sources, or `script: false`).
 */
export function layerWriter(layout: SnapshotLayout, warn: (message: string) => void, script: URL | false = defaultWriterScript()): LayerWriter {
  if (script && (script === defaultScript || existsSync(fileURLToPath(script)))) {
    try {
      return new ThreadWriter(threads.take(script), script, layout, warn);
    } catch {
      // No thread to be had (a resource limit): this thread writes, as for a small layer.
    }
  }
  const applier = new Applier(layout, warn);
  return {
    write: (entry, body) => applier.apply(entry, body),
    finish: async () => {
      await applier.finish();
      return applier.usage();
    },
    abort: () => applier.cleanup(),
  };
}

/**
 * Keeps a writer thread ready while the caller holds it: a pull that will unpack large layers
 * holds one from its start, so that the thread's start (about 0.1 s of CPU, most of it Node's
 * own bootstrap) overlaps the download's first requests instead of delaying the layer's first
 * entries, and a thread that wrote one layer serves the next. Returns the release: once no one
 * holds it, an idle thread is stopped.
 */
export function holdLayerWriter(script: URL | false = defaultWriterScript()): () => void {
  return script ? threads.hold(script) : () => undefined;
}

/** Writer threads between layers: at most one waits, and only while someone holds it. */
class WriterThreads {
  private holders = 0;
  private idle: { worker: Worker; script: string } | undefined;

  hold(script: URL): () => void {
    this.holders++;
    if (!this.idle) {
      try {
        this.keep(this.start(script), script.href);
      } catch {
        // No thread to be had now: the layer starts one, or writes on the calling thread.
      }
    }
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (--this.holders === 0) this.stopIdle();
    };
  }

  /** A thread running `script`: the one waiting, else a new one. */
  take(script: URL): Worker {
    const idle = this.idle;
    if (idle?.script === script.href) {
      this.idle = undefined;
      idle.worker.off('error', ignore).off('exit', this.forget).ref();
      return idle.worker;
    }
    return this.start(script);
  }

  /** A thread whose layer is finished: it waits for the next while the thread is held, else it stops. */
  async giveBack(worker: Worker, script: URL): Promise<void> {
    if (this.holders > 0 && !this.idle) this.keep(worker, script.href);
    else await worker.terminate();
  }

  private start(script: URL): Worker {
    return new Worker(script);
  }

  /** An idle thread keeps no process alive, and one that dies meanwhile is forgotten. */
  private keep(worker: Worker, script: string): void {
    this.idle = { worker, script };
    worker.on('error', ignore).once('exit', this.forget).unref();
  }

  private readonly forget = (): void => {
    this.idle = undefined;
  };

  private stopIdle(): void {
    const idle = this.idle;
    this.idle = undefined;
    if (idle) void idle.worker.off('exit', this.forget).terminate();
  }
}

function ignore(): void {}

const threads = new WriterThreads();

// --- the protocol with apply-worker.ts --------------------------------------------------------

/** One step of a batch: an entry (its body follows), a piece of body [start, end) of the batch's buffer, or a body's end. */
export type WriterOp = { entry: LayerEntry } | { data: [number, number] } | { end: true };

/**
 * A batch's ops as they cross threads. Cloning thousands of small objects was most of what a
 * batch's message cost both threads (about 1.5 µs an op), so the ops are numbers and the
 * entries one JSON text: together about a quarter of that. An op is ENTRY_OP (the batch's next
 * entry), END_OP (a body's end), or a piece of body: its start, then its end.
 */
export const ENTRY_OP = -1;
export const END_OP = -2;

/** A LayerEntry in JSON: xattr values in base64. */
type WireEntry = Omit<LayerEntry, 'xattrs'> & { xattrs: Array<[string, string]> };

export function encodeEntries(entries: LayerEntry[]): string {
  return JSON.stringify(entries.map((e): WireEntry | LayerEntry => (e.xattrs.length === 0 ? e : { ...e, xattrs: e.xattrs.map(([name, value]) => [name, Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')]) })));
}

export function decodeEntries(text: string): LayerEntry[] {
  const entries = JSON.parse(text) as Array<WireEntry | LayerEntry>;
  for (const e of entries) {
    if (e.xattrs.length > 0) e.xattrs = (e as WireEntry).xattrs.map(([name, value]): [string, Uint8Array] => [name, Buffer.from(value, 'base64')]);
  }
  return entries as LayerEntry[];
}

/**
 * A layer on the thread: `start` names it (the thread answers `started` once it runs), `begin`
 * hands over what this thread wrote of it so far (its batches follow), `drop` forgets a layer
 * this thread wrote all of.
 */
export type ToWriter =
  | { type: 'start'; id: number; layout: SnapshotLayout }
  | { type: 'begin'; from: AppliedState | undefined }
  | { type: 'drop' }
  | { type: 'batch'; buffer: ArrayBuffer; ops: number[]; entries: string }
  | { type: 'finish' }
  | { type: 'abort' }
  | { type: 'mknod-done'; id: number; error?: WireError };

export type FromWriter =
  | { type: 'started'; id: number }
  | { type: 'ack'; buffer: ArrayBuffer }
  | { type: 'warn'; message: string }
  | { type: 'mknod'; id: number; path: string; kind: 'c' | 'b' | 'p'; major: number; minor: number }
  | { type: 'finished'; usage: Usage | undefined }
  | { type: 'failed'; error: WireError }
  | { type: 'aborted' };

/** An error as it crosses threads: what a caller can test (class, code, entry) survives. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
  entry?: string;
  reason?: string;
}

export function toWire(err: unknown): WireError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const e = err as Error & Partial<Pick<WireError, 'code' | 'errno' | 'syscall' | 'path' | 'entry' | 'reason'>>;
  const wire: WireError = { name: e.name, message: e.message };
  if (e.stack !== undefined) wire.stack = e.stack;
  for (const k of ['code', 'syscall', 'path', 'entry', 'reason'] as const) if (typeof e[k] === 'string') wire[k] = e[k];
  if (typeof e.errno === 'number') wire.errno = e.errno;
  return wire;
}

export function fromWire(wire: WireError): Error {
  if (wire.name === 'LayerSecurityError' && wire.entry !== undefined && wire.reason !== undefined) {
    return new LayerSecurityError(wire.entry, wire.reason);
  }
  const { name, message, stack, entry: _entry, reason: _reason, ...rest } = wire;
  const err = Object.assign(new Error(message), rest);
  err.name = name;
  if (stack !== undefined) err.stack = stack;
  return err;
}

// --- this thread's side -----------------------------------------------------------------------

/** Bytes of one batch buffer: a larger body piece is split over batches. */
const BATCH_BYTES = 1024 * 1024;
/** Entries a batch holds at most (each costs its clone on both sides). */
const BATCH_OPS = 512;
/** Batch buffers (sent and not yet given back, or being filled): bounds the bytes held for the writer. */
const WRITER_BUFFERS = 4;
/** Batches queued at the writer from which a partial one is not worth a message. */
const WRITER_QUEUE = 2;

/** Layers given to writer threads so far: tells a thread's answer to this layer's start from a late one to an earlier layer's. */
let layersStarted = 0;

class ThreadWriter implements LayerWriter {
  private readonly id = ++layersStarted;
  /**
   * Writes the layer's first entries on this thread until the writer thread runs (its start
   * takes 50-250 ms, while the first entries are already here), then hands over to it between
   * two entries: this thread would otherwise wait with its buffers full.
   */
  private local: Applier | undefined;
  private threadUp = false;
  private readonly free: ArrayBuffer[] = [];
  private allocated = 0;
  private buffer: Uint8Array | undefined;
  private used = 0;
  /** The current batch's ops (see ENTRY_OP), how many, and its entries. */
  private ops: number[] = [];
  private opCount = 0;
  private entries: LayerEntry[] = [];
  private flushScheduled = false;
  /** Set once the writer failed (or exited): every later call rejects with it. */
  private error: Error | undefined;
  private waiting: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private settled: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private usage: Usage | undefined;

  constructor(
    private readonly worker: Worker,
    private readonly script: URL,
    layout: SnapshotLayout,
    private readonly warn: (message: string) => void,
  ) {
    worker.on('message', this.onMessage).on('error', this.fail).once('exit', this.onExit);
    worker.postMessage({ type: 'start', id: this.id, layout } satisfies ToWriter);
    this.local = new Applier(layout, warn);
  }

  async write(entry: LayerEntry, body: EntryBody): Promise<void> {
    if (this.local) {
      // A thread that failed to start leaves the whole layer to this one.
      if (!this.threadUp || this.error) return this.local.apply(entry, body);
      this.worker.postMessage({ type: 'begin', from: this.local.handOver() } satisfies ToWriter);
      this.local = undefined;
    }
    await this.room();
    this.entries.push(entry);
    this.push(ENTRY_OP);
    for await (const chunk of body) {
      let bytes = chunk as Uint8Array;
      while (bytes.length > 0) {
        if (!this.buffer || this.used === BATCH_BYTES) await this.room();
        const buffer = this.buffer as Uint8Array;
        const n = Math.min(bytes.length, BATCH_BYTES - this.used);
        buffer.set(bytes.subarray(0, n), this.used);
        this.push(this.used, this.used + n);
        this.used += n;
        bytes = bytes.subarray(n);
      }
    }
    await this.room();
    this.push(END_OP);
  }

  async finish(): Promise<Usage | undefined> {
    if (this.local) {
      // All of it was written here: the thread, which never began it, may serve the next layer.
      const local = this.local;
      await local.finish();
      this.local = undefined;
      await this.release();
      return local.usage();
    }
    this.flush();
    await this.settle({ type: 'finish' });
    // Its layer is over: the thread may serve the next one (a dead one would have failed the settle).
    this.detach();
    await threads.giveBack(this.worker, this.script);
    return this.usage;
  }

  async abort(): Promise<void> {
    if (this.local) {
      await this.local.cleanup();
      this.local = undefined;
      await this.release();
      return;
    }
    this.buffer = undefined;
    this.ops = [];
    this.opCount = 0;
    this.entries = [];
    if (!this.error) await this.settle({ type: 'abort' }).catch(() => undefined);
    // A thread in an unknown state serves no other layer.
    await this.worker.terminate();
  }

  /** Gives back a thread that never began this layer (a failed one stops). */
  private async release(): Promise<void> {
    this.detach();
    if (this.error) {
      await this.worker.terminate();
      return;
    }
    this.worker.postMessage({ type: 'drop' } satisfies ToWriter);
    await threads.giveBack(this.worker, this.script);
  }

  private detach(): void {
    this.worker.off('message', this.onMessage).off('error', this.fail).off('exit', this.onExit);
  }

  /** Sends `msg` and waits for the writer's last word (finished, aborted, or failed). */
  private settle(msg: ToWriter): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.settled = { resolve, reject };
      this.worker.postMessage(msg);
    });
  }

  /** A batch with room for an entry or a byte: the current one, else a new one once a buffer is free. */
  private async room(): Promise<void> {
    if (this.error) throw this.error;
    if (this.buffer && this.used < BATCH_BYTES && this.opCount < BATCH_OPS) return;
    this.flush();
    while (this.free.length === 0 && this.allocated >= WRITER_BUFFERS) {
      await new Promise<void>((resolve, reject) => (this.waiting = { resolve, reject }));
    }
    if (this.free.length === 0) this.allocated++;
    this.buffer = new Uint8Array(this.free.pop() ?? new ArrayBuffer(BATCH_BYTES));
    this.used = 0;
  }

  private push(...op: number[]): void {
    this.ops.push(...op);
    this.opCount++;
    this.flushSoon();
  }

  /**
   * Sends a partial batch once this turn of the event loop is over, when the writer may run out
   * of work meanwhile: it gets what the last chunk of input held without waiting for a full
   * batch. While it has WRITER_QUEUE batches to write, batches fill up instead (fewer, larger
   * messages; each is a wake-up of both threads); a buffer given back reconsiders.
   */
  private flushSoon(): void {
    if (this.flushScheduled || this.ops.length === 0 || this.sentBatches() >= WRITER_QUEUE) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.sentBatches() < WRITER_QUEUE) this.flush();
    });
  }

  /** Batches the writer has and has not given back. */
  private sentBatches(): number {
    return this.allocated - this.free.length - (this.buffer ? 1 : 0);
  }

  private flush(): void {
    if (!this.buffer || this.ops.length === 0 || this.error) return;
    const buffer = this.buffer.buffer as ArrayBuffer;
    this.worker.postMessage({ type: 'batch', buffer, ops: this.ops, entries: encodeEntries(this.entries) } satisfies ToWriter, [buffer]);
    this.buffer = undefined;
    this.ops = [];
    this.opCount = 0;
    this.entries = [];
  }

  private readonly onExit = (): void => this.fail(new Error('layer writer thread exited'));

  private readonly onMessage = (msg: FromWriter): void => {
    switch (msg.type) {
      case 'started':
        if (msg.id === this.id) this.threadUp = true;
        return;
      case 'ack':
        this.free.push(msg.buffer);
        this.waiting?.resolve();
        this.waiting = undefined;
        this.flushSoon();
        return;
      case 'warn':
        this.warn(msg.message);
        return;
      case 'mknod':
        mknod(msg.path, msg.kind, msg.major, msg.minor).then(
          () => this.worker.postMessage({ type: 'mknod-done', id: msg.id } satisfies ToWriter),
          (err: unknown) => this.worker.postMessage({ type: 'mknod-done', id: msg.id, error: toWire(err) } satisfies ToWriter),
        );
        return;
      case 'finished':
        this.usage = msg.usage;
        this.settled?.resolve();
        this.settled = undefined;
        return;
      case 'aborted':
        this.settled?.resolve();
        this.settled = undefined;
        return;
      case 'failed':
        this.fail(fromWire(msg.error));
    }
  };

  private readonly fail = (err: Error): void => {
    this.error ??= err;
    this.waiting?.reject(this.error);
    this.settled?.reject(this.error);
    this.waiting = undefined;
    this.settled = undefined;
  };
}

// The writer thread of layer-writer.ts: runs an Applier over the entries its parent sends, in
// their order, and gives each batch's buffer back once everything in it is written. It goes on
// from the entries its parent wrote itself while this thread was starting. It writes one layer
// after another: a thread started as a pull begins serves each of its large layers.

import { parentPort } from 'node:worker_threads';
import { Applier, type AppliedState } from './apply-entries.js';
import { decodeEntries, END_OP, ENTRY_OP, fromWire, toWire, type FromWriter, type ToWriter, type WriterOp } from './layer-writer.js';
import type { LayerEntry } from './layer-reader.js';
import type { SnapshotLayout } from './store.js';

const port = parentPort;
if (!port) throw new Error('apply-worker.js runs as a worker thread');
const send = (msg: FromWriter, transfer?: ArrayBuffer[]): void => port.postMessage(msg, transfer);

class Aborted extends Error {}

/** The layer being written: its batches received and not yet written; `at` and `entryAt` are the first's next op and entry. */
class Layer {
  constructor(readonly layout: SnapshotLayout) {}

  readonly batches: Array<{ buffer: ArrayBuffer; bytes: Uint8Array; ops: number[]; entries: LayerEntry[] }> = [];
  at = 0;
  entryAt = 0;
  finishing = false;
  aborted = false;
  private wake: (() => void) | undefined;

  notify(): void {
    this.wake?.();
    this.wake = undefined;
  }

  /** The next op, once it is here; undefined once the parent said the layer is over. */
  async nextOp(): Promise<{ op: WriterOp; bytes: Uint8Array } | undefined> {
    for (;;) {
      if (this.aborted) throw new Aborted();
      const batch = this.batches[0];
      if (batch && this.at < batch.ops.length) {
        const code = batch.ops[this.at++]!;
        const op: WriterOp = code === ENTRY_OP ? { entry: batch.entries[this.entryAt++]! } : code === END_OP ? { end: true } : { data: [code, batch.ops[this.at++]!] };
        return { op, bytes: batch.bytes };
      }
      if (batch) {
        // Everything of this batch is written (a body's piece is written before the next is asked for).
        this.batches.shift();
        this.at = 0;
        this.entryAt = 0;
        send({ type: 'ack', buffer: batch.buffer }, [batch.buffer]);
        continue;
      }
      if (this.finishing) return undefined;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  async *bodyOf(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const next = await this.nextOp();
      if (!next || 'entry' in next.op) throw new Error('layer writer: entry body cut short');
      if ('end' in next.op) return;
      yield next.bytes.subarray(next.op.data[0], next.op.data[1]);
    }
  }
}

let mknodId = 0;
const mknodCalls = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
/** Device nodes are made by the parent, whose syscall server is already running. */
function mknodByParent(path: string, kind: 'c' | 'b' | 'p', major = 0, minor = 0): Promise<void> {
  const id = ++mknodId;
  return new Promise((resolve, reject) => {
    mknodCalls.set(id, { resolve, reject });
    send({ type: 'mknod', id, path, kind, major, minor });
  });
}

/** Writes `layer`'s entries from the next on, into the tree its parent began as `from` tells. */
async function write(layer: Layer, from: AppliedState | undefined): Promise<void> {
  const applier = new Applier(layer.layout, (message) => send({ type: 'warn', message }), mknodByParent, from);
  try {
    for (let next = await layer.nextOp(); next; next = await layer.nextOp()) {
      if (!('entry' in next.op)) throw new Error('layer writer: body without an entry');
      await applier.apply(next.op.entry, layer.bodyOf());
    }
    await applier.finish();
    send({ type: 'finished', usage: applier.usage() });
  } catch (err) {
    await applier.cleanup().catch(() => undefined);
    send(err instanceof Aborted ? { type: 'aborted' } : { type: 'failed', error: toWire(err) });
  }
}

let current: Layer | undefined;
port.on('message', (msg: ToWriter) => {
  if (msg.type === 'start') {
    // Told at once: until then the parent writes the layer's entries itself.
    current = new Layer(msg.layout);
    send({ type: 'started', id: msg.id });
    return;
  }
  if (msg.type === 'begin') {
    if (current) void write(current, msg.from);
    return;
  }
  if (msg.type === 'drop') {
    current = undefined;
    return;
  }
  if (msg.type === 'mknod-done') {
    const call = mknodCalls.get(msg.id);
    mknodCalls.delete(msg.id);
    if (msg.error) call?.reject(fromWire(msg.error));
    else call?.resolve();
    return;
  }
  if (!current) return;
  if (msg.type === 'batch') current.batches.push({ buffer: msg.buffer, bytes: new Uint8Array(msg.buffer), ops: msg.ops, entries: decodeEntries(msg.entries) });
  else if (msg.type === 'finish') current.finishing = true;
  else if (msg.type === 'abort') current.aborted = true;
  current.notify();
});

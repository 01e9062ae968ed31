// The writer thread of layer-writer.ts: runs one Applier over the entries its parent sends, in
// their order, and gives each batch's buffer back once everything in it is written.

import { parentPort, workerData } from 'node:worker_threads';
import { Applier } from './apply-entries.js';
import { fromWire, toWire, type FromWriter, type ToWriter, type WriterOp } from './layer-writer.js';
import type { SnapshotLayout } from './store.js';

const port = parentPort;
if (!port) throw new Error('apply-worker.js runs as a worker thread');
const send = (msg: FromWriter, transfer?: ArrayBuffer[]): void => port.postMessage(msg, transfer);

class Aborted extends Error {}

/** Batches received and not yet written; `at` is the next op of the first. */
const batches: Array<{ buffer: ArrayBuffer; bytes: Uint8Array; ops: WriterOp[] }> = [];
let at = 0;
let finishing = false;
let aborted = false;
let wake: (() => void) | undefined;

/** The next op, once it is here; undefined once the parent said the layer is over. */
async function nextOp(): Promise<{ op: WriterOp; bytes: Uint8Array } | undefined> {
  for (;;) {
    if (aborted) throw new Aborted();
    const batch = batches[0];
    if (batch && at < batch.ops.length) {
      return { op: batch.ops[at++]!, bytes: batch.bytes };
    }
    if (batch) {
      // Everything of this batch is written (a body's piece is written before the next is asked for).
      batches.shift();
      at = 0;
      send({ type: 'ack', buffer: batch.buffer }, [batch.buffer]);
      continue;
    }
    if (finishing) return undefined;
    await new Promise<void>((resolve) => (wake = resolve));
  }
}

async function* bodyOf(): AsyncGenerator<Uint8Array> {
  for (;;) {
    const next = await nextOp();
    if (!next || 'entry' in next.op) throw new Error('layer writer: entry body cut short');
    if ('end' in next.op) return;
    yield next.bytes.subarray(next.op.data[0], next.op.data[1]);
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

port.on('message', (msg: ToWriter) => {
  if (msg.type === 'batch') batches.push({ buffer: msg.buffer, bytes: new Uint8Array(msg.buffer), ops: msg.ops });
  else if (msg.type === 'finish') finishing = true;
  else if (msg.type === 'abort') aborted = true;
  else if (msg.type === 'mknod-done') {
    const call = mknodCalls.get(msg.id);
    mknodCalls.delete(msg.id);
    if (msg.error) call?.reject(fromWire(msg.error));
    else call?.resolve();
  }
  wake?.();
  wake = undefined;
});

const applier = new Applier(workerData.layout as SnapshotLayout, (message) => send({ type: 'warn', message }), mknodByParent);
try {
  for (let next = await nextOp(); next; next = await nextOp()) {
    if (!('entry' in next.op)) throw new Error('layer writer: body without an entry');
    await applier.apply(next.op.entry, bodyOf());
  }
  await applier.finish();
  send({ type: 'finished', usage: applier.usage() });
} catch (err) {
  await applier.cleanup().catch(() => undefined);
  send(err instanceof Aborted ? { type: 'aborted' } : { type: 'failed', error: toWire(err) });
}

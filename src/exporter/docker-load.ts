// `--load` (`--output type=docker` without dest): the docker archive streamed into `docker load`,
// as buildx loads into the engine its docker driver talks to. `DOCKER_HOST` and docker's other
// settings apply, as for any docker command.

import { spawn } from 'node:child_process';
import { addAbortSignal, type Writable } from 'node:stream';

/** Runs `write` into the stdin of `docker load` (`signal` cuts it short, and docker loads nothing); returns what docker printed (`Loaded image: …`). */
export async function loadIntoDocker(write: (out: Writable) => Promise<void>, signal?: AbortSignal): Promise<string> {
  signal?.throwIfAborted();
  const docker = 'docker';
  const child = spawn(docker, ['load'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(err.code === 'ENOENT' ? `--load needs the ${docker} command and a running Docker engine: ${docker} is not installed` : `${docker} load: ${err.message}`)),
    );
    child.once('close', resolve);
  });
  exited.catch(() => undefined);
  // docker leaving early (no engine) closes the pipe: its own message says why, below.
  child.stdin.on('error', () => undefined);
  if (signal) addAbortSignal(signal, child.stdin);
  try {
    await write(child.stdin);
  } catch (err) {
    // Cut short here (Ctrl-C, a missing blob): docker must not load a truncated archive.
    child.kill();
    await exited.catch(() => undefined);
    if (child.exitCode !== null && child.exitCode !== 0 && stderr) throw new Error(`--load: ${docker} load failed: ${stderr.trim()}`);
    throw err;
  }
  child.stdin.end();
  const code = await exited;
  if (code !== 0) throw new Error(`--load: ${docker} load failed (exit ${code}): ${stderr.trim() || stdout.trim() || 'no output'}`);
  return stdout.trim();
}

// Preloaded (`node -r`) into a command a bench times: prints the process's peak RSS on exit.
const { readFileSync, writeSync } = require('node:fs');

process.on('exit', () => {
  const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  writeSync(2, `peak-rss-kb ${kb}\n`);
});

// Starts `grok serve` for a test file on a free port and stops it afterwards.
// Environment (set by tests/cmake/serve.cmake): GROK (the binary), GROK_MODEL.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

export const GROK = process.env.GROK;
export const MODEL = process.env.GROK_MODEL;
if (!GROK || !MODEL) throw new Error('set GROK and GROK_MODEL');

// One engine thread unless a test asks for more: on a small shared machine a
// thread pool waits at every barrier for threads the scheduler has parked,
// which makes step times (and the one-second cancellation bound) erratic.
// opts.env: extra environment; opts.healthy (default true): wait for /health 200.
export async function startServer(args = [], model = MODEL, opts = {}) {
  const threads = args.includes('-t') ? [] : ['-t', '1'];
  const proc = spawn(GROK, ['serve', '-m', model, '--port', '0', ...threads, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...(opts.env ?? {}) },
  });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + log)), 30000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${log}`)); });
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; opts.healthy ?? true; i++) {
    try {
      const r = await fetch(base + '/health');
      if (r.status === 200) break;
    } catch (e) { /* not up yet */ }
    if (i > 600) throw new Error('server never became healthy:\n' + log);
    await sleep(50);
  }
  return {
    proc, port, base, log: () => log,
    // SIGTERM, and wait for a clean exit (status 0)
    async stop() {
      const done = proc.exitCode !== null ? Promise.resolve(proc.exitCode)
        : new Promise((r) => proc.on('exit', (code, sig) => r(code ?? sig)));
      if (proc.exitCode === null) proc.kill('SIGTERM');
      const code = await done;
      if (code !== 0) console.log('server log (exit ' + code + '):\n' + log.slice(-6000));
      return code;
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function slots(base, headers = {}) {
  const r = await fetch(base + '/slots', { headers });
  return r.json();
}

// Waits until every slot is idle; returns the elapsed milliseconds.
export async function waitIdle(base, limitMs, headers = {}) {
  const t0 = Date.now();
  for (;;) {
    const s = await slots(base, headers);
    if (s.every((x) => x.state === 'idle')) return Date.now() - t0;
    if (Date.now() - t0 > limitMs) throw new Error('slots still busy: ' + JSON.stringify(s));
    await sleep(20);
  }
}

export function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}
export function openFds(pid) { return readdirSync(`/proc/${pid}/fd`).length; }

// Raw SSE events of a streamed POST (data payloads, in order).
export async function sse(url, body, headers = {}) {
  const res = await fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body),
  });
  const text = await res.text();
  const events = [];
  for (const block of text.split('\n\n')) {
    for (const line of block.split('\n')) if (line.startsWith('data: ')) events.push(line.slice(6));
  }
  return { status: res.status, headers: res.headers, text, events };
}

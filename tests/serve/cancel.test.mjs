// A client that goes away cancels its request, queued, in prefill or generating,
// and its slot is free within a second (GET /slots).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, slots, sleep, waitIdle } from './server.mjs';

let srv;
before(async () => {
  // small batches make a long prompt's prefill last many steps
  srv = await startServer(['-np', '1', '-c', '2048', '-b', '8', '--max-queue', '4',
    '--sse-keepalive-ms', '200']);
});
after(async () => { assert.equal(await srv.stop(), 0); });

function start(body, stream = true) {
  const ac = new AbortController();
  const p = fetch(srv.base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: ac.signal,
    body: JSON.stringify({ temperature: 0, stream, ...body }),
  }).then(async (r) => { const rd = r.body.getReader(); for (;;) { const x = await rd.read(); if (x.done) return; } })
    .catch((e) => e);
  return { ac, p };
}

async function until(pred, ms = 5000) {
  const t0 = Date.now();
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error('condition not reached in time');
    await sleep(10);
  }
}

async function metric(name) {
  const t = await (await fetch(srv.base + '/metrics')).text();
  return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(t)[1]);
}

for (const stream of [true, false]) {
  test(`cancel while generating (${stream ? 'streamed' : 'whole'}) frees the slot within 1 s`, async () => {
    const r = start({ prompt: 'The', max_tokens: 1500 }, stream);
    await until(async () => (await slots(srv.base))[0].n_generated > 5);
    r.ac.abort();
    const ms = await waitIdle(srv.base, 1000);
    await r.p;
    assert.ok(ms <= 1000, `${ms} ms`);
    const s = (await slots(srv.base))[0];
    assert.equal(s.state, 'idle');
  });
}

test('cancel during prefill frees the slot within 1 s', async () => {
  const prompt = 'the history of the nation and its people '.repeat(200);
  const r = start({ prompt, max_tokens: 4 });
  await until(async () => { const s = (await slots(srv.base))[0]; return s.state === 'prefill' && s.n_prompt_done > 16; });
  r.ac.abort();
  const t0 = Date.now();
  await waitIdle(srv.base, 1000);
  const s = (await slots(srv.base))[0];
  assert.ok(s.n_cached < s.n_prompt || s.n_prompt === 0, 'stopped before the prompt was done');
  assert.ok(Date.now() - t0 <= 1000);
  await r.p;
});

test('cancel while queued leaves the queue within 1 s; the running request goes on', async () => {
  const a = start({ prompt: 'The', max_tokens: 1900 });
  await until(async () => (await slots(srv.base))[0].state === 'generating');
  const b = start({ prompt: 'Our nation', max_tokens: 600 });
  await until(async () => (await metric('grok_queue_length')) === 1);
  const before = await metric('grok_requests_finished_total\\{reason="cancelled"\\}');
  b.ac.abort();
  const t0 = Date.now();
  await until(async () => (await metric('grok_queue_length')) === 0, 1000);
  assert.ok(Date.now() - t0 <= 1000);
  assert.equal(await metric('grok_requests_finished_total\\{reason="cancelled"\\}'), before + 1);
  assert.equal((await slots(srv.base))[0].state, 'generating');
  a.ac.abort();
  await waitIdle(srv.base, 1000);
  await a.p;
  await b.p;
});

test('a quiet stream (queued) gets keep-alive comments', async () => {
  const a = start({ prompt: 'The', max_tokens: 1500 });
  await until(async () => (await slots(srv.base))[0].state === 'generating');
  const ac = new AbortController();
  const res = await fetch(srv.base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: ac.signal,
    body: JSON.stringify({ prompt: 'Our nation', max_tokens: 4, stream: true }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const rd = res.body.getReader();
  const { value } = await rd.read();
  assert.equal(new TextDecoder().decode(value), ': keep-alive\n\n');
  ac.abort();
  a.ac.abort();
  await waitIdle(srv.base, 1000);
  await a.p;
});

// A client that goes away cancels its request, queued, in prefill or generating,
// and its slot is free within a second (GET /slots).
//
// The shipped model writes about 3000 tokens a second (1500 in 0.5 s), so a
// request that must still be running while the test looks at it (generating
// when cancelled, ahead of a queued one, holding back a queued stream past its
// keep-alive) asks for LONG tokens of an 8192-token context: seconds of work
// here, and still far more than the few round trips the test needs on a
// machine ten times faster. Every such request is cancelled, never awaited to
// its end, so the length costs nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, slots, sleep, waitIdle } from './server.mjs';

const LONG = 8000;
let srv;
before(async () => {
  // small batches make a long prompt's prefill last many steps
  srv = await startServer(['-np', '1', '-c', '8192', '-b', '8', '--max-queue', '4',
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
const CANCELLED = 'grok_requests_finished_total\\{reason="cancelled"\\}';

for (const stream of [true, false]) {
  test(`cancel while generating (${stream ? 'streamed' : 'whole'}) frees the slot within 1 s`, async () => {
    const before = await metric(CANCELLED);
    const r = start({ prompt: 'The', max_tokens: LONG }, stream);
    await until(async () => (await slots(srv.base))[0].n_generated > 5);
    r.ac.abort();
    const ms = await waitIdle(srv.base, 1000);
    await r.p;
    assert.ok(ms <= 1000, `${ms} ms`);
    const s = (await slots(srv.base))[0];
    assert.equal(s.state, 'idle');
    // it ended as cancelled, not by running out its tokens
    assert.equal(await metric(CANCELLED), before + 1);
  });
}

test('cancel during prefill frees the slot within 1 s', async () => {
  // about 6400 prompt tokens in batches of 8: 800 steps, over a second here
  const prompt = 'the history of the nation and its people '.repeat(800);
  const before = await metric(CANCELLED);
  const r = start({ prompt, max_tokens: 4 });
  const seen = await until(async () => { const s = (await slots(srv.base))[0]; return s.state === 'prefill' && s.n_prompt_done > 16 && s; });
  r.ac.abort();
  const t0 = Date.now();
  await waitIdle(srv.base, 1000);
  assert.ok(Date.now() - t0 <= 1000);
  // an idle slot reports the tokens its sequence kept: part of the prompt only
  const s = (await slots(srv.base))[0];
  assert.ok(s.n_cached < seen.n_prompt, `stopped before the prompt was done (${s.n_cached} of ${seen.n_prompt})`);
  assert.equal(await metric(CANCELLED), before + 1);
  await r.p;
});

test('cancel while queued leaves the queue within 1 s; the running request goes on', async () => {
  const a = start({ prompt: 'The', max_tokens: LONG });
  await until(async () => (await slots(srv.base))[0].state === 'generating');
  const b = start({ prompt: 'Our nation', max_tokens: 600 });
  await until(async () => (await metric('grok_queue_length')) === 1);
  const before = await metric(CANCELLED);
  b.ac.abort();
  const t0 = Date.now();
  await until(async () => (await metric('grok_queue_length')) === 0, 1000);
  assert.ok(Date.now() - t0 <= 1000);
  assert.equal(await metric(CANCELLED), before + 1);
  assert.equal((await slots(srv.base))[0].state, 'generating');
  a.ac.abort();
  await waitIdle(srv.base, 1000);
  await a.p;
  await b.p;
});

test('a quiet stream (queued) gets keep-alive comments', async () => {
  // the first bytes of the queued stream come after the 200 ms keep-alive
  // interval, so `a` must run well past that (LONG tokens: seconds)
  const a = start({ prompt: 'The', max_tokens: LONG });
  await until(async () => (await slots(srv.base))[0].state === 'generating');
  const ac = new AbortController();
  const res = await fetch(srv.base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: ac.signal,
    body: JSON.stringify({ prompt: 'Our nation', max_tokens: 4, stream: true }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  // the first whole event is a keep-alive comment (a slow reader may get a
  // second one with it, never data: the request is still queued)
  const rd = res.body.getReader(), dec = new TextDecoder();
  let text = '';
  while (!text.includes('\n\n')) {
    const { value, done } = await rd.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  assert.match(text, /^(: keep-alive\n\n)+$/);
  ac.abort();
  a.ac.abort();
  await waitIdle(srv.base, 1000);
  await a.p;
});

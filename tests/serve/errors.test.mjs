// Errors: the right status and OpenAI's error shape, and the server keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, sse, slots, sleep, waitIdle } from './server.mjs';

let srv, client;
before(async () => {
  srv = await startServer(['-np', '1', '-c', '512', '--max-queue', '1', '--max-body', '16']);
  client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'unused', maxRetries: 0 });
});
after(async () => { assert.equal(await srv.stop(), 0); });

function isError(body, status, param) {
  assert.equal(typeof body.error, 'object', JSON.stringify(body));
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
  assert.equal(typeof body.error.type, 'string');
  assert.ok('param' in body.error && 'code' in body.error);
  if (param !== undefined) assert.equal(body.error.param, param);
}

async function post(path, body, headers = {}) {
  const r = await fetch(srv.base + path, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });
  return { status: r.status, headers: r.headers, body: await r.json() };
}

async function stillServes() {
  const r = await client.completions.create({ model: 'm', prompt: 'The', max_tokens: 2, temperature: 0 });
  assert.equal(r.usage.completion_tokens, 2);
}

test('malformed JSON, wrong types, missing fields: 400 naming the field', async () => {
  let r = await post('/v1/chat/completions', '{"messages": [');
  assert.equal(r.status, 400);
  isError(r.body, 400, null);
  r = await post('/v1/chat/completions', '[1,2]');
  assert.equal(r.status, 400);
  const cases = [
    [{ messages: 'hi' }, 'messages'],
    [{ messages: [{ role: 'user', content: 'hi' }], temperature: 'hot' }, 'temperature'],
    [{ messages: [{ role: 'user', content: 'hi' }], temperature: 5 }, 'temperature'],
    [{ messages: [{ role: 'user', content: 'hi' }], max_tokens: -1 }, 'max_tokens'],
    [{ messages: [{ role: 'user', content: 'hi' }], max_tokens: 1.5 }, 'max_tokens'],
    [{ messages: [{ role: 'user', content: 'hi' }], stop: 3 }, 'stop'],
    [{ messages: [{ role: 'user', content: 'hi' }], stream: 'yes' }, 'stream'],
    [{ messages: [{ role: 'wizard', content: 'hi' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content'],
    [{}, 'messages'],
    [{ messages: [{ role: 'user', content: 'hi' }], n: 2 }, 'n'],
    [{ messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
    [{ messages: [{ role: 'user', content: 'hi' }], response_format: { type: 'json_object' } }, 'response_format'],
    [{ messages: [{ role: 'user', content: 'hi' }], logit_bias: { 5: 10 } }, 'logit_bias'],
    [{ messages: [{ role: 'user', content: 'hi' }], frobnicate: 1 }, 'frobnicate'],
    [{ messages: [{ role: 'user', content: 'hi' }], top_logprobs: 2 }, 'top_logprobs'],
  ];
  for (const [body, param] of cases) {
    const x = await post('/v1/chat/completions', JSON.stringify(body));
    assert.equal(x.status, 400, JSON.stringify(body));
    isError(x.body, 400, param);
  }
  const y = await post('/v1/completions', JSON.stringify({ prompt: [[1, 2], [3, 4]] }));
  assert.equal(y.status, 400);
  isError(y.body, 400, 'prompt');
  const z = await post('/v1/completions', JSON.stringify({ prompt: [999999] }));
  assert.equal(z.status, 400);
  // nesting beyond the limit, refused before parsing
  const deep = '{"prompt":' + '['.repeat(100) + ']'.repeat(100) + '}';
  const d = await post('/v1/completions', deep);
  assert.equal(d.status, 400);
  isError(d.body, 400);
  // the openai client sees a BadRequestError with the status and param
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], n: 3 }),
    (e) => e.status === 400 && e.param === 'n');
  await stillServes();
});

test('unknown path 404, wrong method 405', async () => {
  let r = await fetch(srv.base + '/v1/nothing');
  assert.equal(r.status, 404);
  isError(await r.json(), 404);
  r = await fetch(srv.base + '/v1/chat/completions');
  assert.equal(r.status, 405);
  isError(await r.json(), 405);
  r = await fetch(srv.base + '/health', { method: 'POST', body: '{}' });
  assert.equal(r.status, 405);
  await stillServes();
});

test('a body over --max-body is 413', async () => {
  const big = JSON.stringify({ prompt: 'x'.repeat(40 * 1024) });
  const r = await post('/v1/completions', big);
  assert.equal(r.status, 413);
  isError(r.body, 413);
  await stillServes();
});

test('a prompt longer than the context: 400 before queueing, streamed or not', async () => {
  const prompt = 'the history of the nation '.repeat(150);
  await assert.rejects(client.completions.create({ model: 'm', prompt, max_tokens: 4 }),
    (e) => e.status === 400 && e.code === 'context_length_exceeded' && e.param === 'prompt');
  await assert.rejects(client.completions.create({ model: 'm', prompt, max_tokens: 4, stream: true }),
    (e) => e.status === 400 && e.code === 'context_length_exceeded');
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: prompt }], stream: true }),
    (e) => e.status === 400 && e.param === 'messages');
  const r = await sse(srv.base + '/v1/completions', { prompt, stream: true });
  assert.equal(r.status, 400);
  isError(JSON.parse(r.text), 400, 'prompt');
  await stillServes();
});

test('a full queue is 503 with Retry-After; the server recovers', async () => {
  // one slot and a queue of one: a long generation, one waiting, then refusal.
  // The long one must outlast the checks below: the shipped model writes about
  // 3000 tokens a second, so it asks for 8000 of an 8192-token context on a
  // server of its own (the one above has 512), seconds of work; it is
  // cancelled, never awaited to its end.
  const s = await startServer(['-np', '1', '-c', '8192', '--max-queue', '1']);
  try {
    const c = new OpenAI({ baseURL: s.base + '/v1', apiKey: 'unused', maxRetries: 0 });
    const until = async (what, pred) => {
      for (const t0 = Date.now(); !(await pred()); await sleep(5))
        if (Date.now() - t0 > 10000) throw new Error(what + ' not seen in 10 s: ' + JSON.stringify(await slots(s.base)));
    };
    const queued = async () => /^grok_queue_length 1$/m.test(await (await fetch(s.base + '/metrics')).text());
    const ac1 = new AbortController(), ac2 = new AbortController();
    const long = { model: 'm', prompt: 'The', max_tokens: 8000, temperature: 0 };
    const a = c.completions.create(long, { signal: ac1.signal }).catch((e) => e);
    await until('the first request generating', async () => (await slots(s.base))[0].state === 'generating');
    const b = c.completions.create(long, { signal: ac2.signal }).catch((e) => e);
    await until('the second request queued', queued);
    const raw = await fetch(s.base + '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(long) });
    assert.equal(raw.status, 503);
    assert.ok(Number(raw.headers.get('retry-after')) >= 1);
    isError(await raw.json(), 503);
    await assert.rejects(c.completions.create(long), (e) => e.status === 503);
    assert.ok(await queued(), 'the first request still ran, the second still waited');
    ac1.abort();
    ac2.abort();
    await a;
    await b;
    await waitIdle(s.base, 2000);
    const r = await c.completions.create({ model: 'm', prompt: 'The', max_tokens: 2, temperature: 0 });
    assert.equal(r.usage.completion_tokens, 2);
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

test('SIGTERM mid-stream: an error event, [DONE], and a clean exit', async () => {
  const s2 = await startServer(['-np', '1', '-c', '4096']);
  const res = await fetch(s2.base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'The', max_tokens: 4000, temperature: 0, stream: true }),
  });
  const reader = res.body.getReader();
  await reader.read(); // the stream has started
  const exit = s2.stop();
  let text = '';
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value);
  }
  assert.equal(await exit, 0);
  const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  assert.equal(events.at(-1), '[DONE]');
  const err = JSON.parse(events.at(-2));
  isError(err);
  assert.match(err.error.message, /shutting down/);
});

test('API key: missing or wrong is 401, right one works, /health and / stay open', async () => {
  const s3 = await startServer(['--api-key', 'sekrit-key-1']);
  try {
    const bad = new OpenAI({ baseURL: s3.base + '/v1', apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(bad.models.list(), (e) => e.status === 401);
    await assert.rejects(bad.completions.create({ model: 'm', prompt: 'x', max_tokens: 1 }), (e) => e.status === 401);
    const prefix = new OpenAI({ baseURL: s3.base + '/v1', apiKey: 'sekrit-key-', maxRetries: 0 });
    await assert.rejects(prefix.models.list(), (e) => e.status === 401);
    let r = await fetch(s3.base + '/v1/models');
    assert.equal(r.status, 401);
    isError(await r.json(), 401);
    r = await fetch(s3.base + '/slots');
    assert.equal(r.status, 401);
    assert.equal((await fetch(s3.base + '/health')).status, 200);
    assert.equal((await fetch(s3.base + '/')).status, 200);
    const good = new OpenAI({ baseURL: s3.base + '/v1', apiKey: 'sekrit-key-1', maxRetries: 0 });
    const c = await good.completions.create({ model: 'm', prompt: 'The', max_tokens: 2 });
    assert.equal(c.usage.completion_tokens, 2);
  } finally {
    assert.equal(await s3.stop(), 0);
  }
});

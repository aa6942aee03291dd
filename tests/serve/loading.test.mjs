// /health answers 503 while the model loads and 200 after; while loading, every
// other endpoint of the model answers 503 in OpenAI's error shape with
// Retry-After, and the chat page is already served. The load is held for as
// long as the test needs by hold_open.c (LD_PRELOAD): the server's open() of
// the model file waits until a release file exists.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startServer, MODEL, sleep } from './server.mjs';

const LIB = process.env.HOLD_OPEN_LIB;
let srv, dir, release;
before(async () => {
  if (!LIB) return;
  dir = mkdtempSync(join(tmpdir(), 'grok-loading-'));
  release = join(dir, 'release');
  srv = await startServer(['-np', '1', '-c', '256'], MODEL, {
    healthy: false,
    env: { LD_PRELOAD: LIB, GK_HOLD_OPEN: MODEL, GK_HOLD_OPEN_RELEASE: release },
  });
});
after(async () => {
  if (!srv) return;
  writeFileSync(release, ''); // a failed test must not leave the load held
  assert.equal(await srv.stop(), 0);
  rmSync(dir, { recursive: true, force: true });
});

async function call(method, path, body) {
  const r = await fetch(srv.base + path, {
    method, headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, text };
}

function loading503(r, what) {
  assert.equal(r.status, 503, `${what}: ${r.status} ${r.text}`);
  assert.equal(r.headers.get('retry-after'), '1', what);
  assert.match(r.headers.get('content-type'), /^application\/json/, what);
  const e = JSON.parse(r.text).error;
  assert.equal(typeof e, 'object', what);
  assert.ok(typeof e.message === 'string' && /load/.test(e.message), `${what}: ${e.message}`);
  assert.equal(typeof e.type, 'string', what);
  assert.ok('param' in e, what);
  assert.equal(e.code, 'loading', what);
}

const endpoints = [
  ['GET', '/health'],
  ['GET', '/v1/models'],
  ['POST', '/v1/completions', { prompt: 'The', max_tokens: 2 }],
  ['POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }],
  ['POST', '/tokenize', { content: 'The' }],
  ['POST', '/detokenize', { tokens: [1] }],
  ['POST', '/apply-template', { messages: [{ role: 'user', content: 'Hi' }] }],
  ['GET', '/metrics'],
  ['GET', '/slots'],
];

test('503 while loading, on every endpoint of the model, for as long as the load lasts', { skip: !LIB && 'HOLD_OPEN_LIB not set' }, async () => {
  for (let round = 0; round < 2; round++) {
    for (const [m, p, b] of endpoints) loading503(await call(m, p, b), `${m} ${p}`);
    await sleep(300); // still loading: the answer follows the load, not a timer
  }
  // the official client sees an APIError with the status
  const client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'unused', maxRetries: 0 });
  await assert.rejects(client.models.list(), (e) => e.status === 503);
  // the page and the unknown paths do not wait for the model
  const page = await call('GET', '/');
  assert.equal(page.status, 200);
  assert.match(page.text, /<html/i);
  assert.equal((await call('GET', '/nope')).status, 404);
});

test('200 once loaded, and the model answers', { skip: !LIB && 'HOLD_OPEN_LIB not set' }, async () => {
  writeFileSync(release, '');
  let r;
  for (let i = 0; ; i++) {
    r = await call('GET', '/health');
    if (r.status === 200) break;
    loading503(r, 'GET /health during the load');
    assert.ok(i < 600, 'the model never loaded:\n' + srv.log());
    await sleep(50);
  }
  assert.deepEqual(JSON.parse(r.text), { status: 'ok' });
  assert.equal(r.headers.get('retry-after'), null);
  const client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'unused', maxRetries: 0 });
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  const c = await client.completions.create({ model: 'm', prompt: 'The', max_tokens: 3, temperature: 0 });
  assert.equal(c.usage.completion_tokens, 3);
});

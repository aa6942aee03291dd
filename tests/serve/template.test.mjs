// Grok-2's chat template through the server, on a small random Grok-2 model
// whose rank-BPE vocabulary has <|separator|> and <|eos|> (built by
// tests/tokenizer/chat_test.py's builder; its replies are noise, so the test
// checks the prompt, the tokens and how replies end, not the words).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { startServer } from './server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
let srv, client, dir, skip = false;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'grok-serve-tpl-'));
  const model = join(dir, 'grok2-bpe.gguf');
  try {
    execFileSync('/usr/bin/python3', ['-c',
      'import sys; sys.path.insert(0, sys.argv[1]); import chat_test; chat_test.build(sys.argv[2], "grok2")',
      join(here, '..', 'tokenizer'), model], { stdio: 'pipe' });
  } catch (e) {
    skip = 'cannot build the Grok-2 test model (python3 with numpy): ' + String(e.stderr || e).slice(0, 200);
    return;
  }
  srv = await startServer(['-np', '2', '-c', '256'], model);
  client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'unused', maxRetries: 0 });
});
after(async () => {
  if (srv) assert.equal(await srv.stop(), 0);
  rmSync(dir, { recursive: true, force: true });
});

const msgs = [
  { role: 'system', content: '  Be brief.\n' },
  { role: 'user', content: 'hello there' },
  { role: 'assistant', content: ' and what ' },
  { role: 'user', content: 'what\n' },
];

test('apply-template gives the Grok-2 prompt exactly', async (t) => {
  if (skip) return t.skip(skip);
  const r = await (await fetch(srv.base + '/apply-template', { method: 'POST', body: JSON.stringify({ messages: msgs }) })).json();
  assert.equal(r.templated, true);
  assert.equal(r.prompt, 'System: Be brief.<|separator|>\n\nHuman: hello there<|separator|>\n\n' +
    'Assistant:  and what <|separator|>\n\nHuman: what<|separator|>\n\nAssistant:');
  const tok = await (await fetch(srv.base + '/tokenize', { method: 'POST', body: JSON.stringify({ content: '<|separator|>', parse_special: true }) })).json();
  assert.deepEqual(tok.tokens, [1]);
  const plain = await (await fetch(srv.base + '/tokenize', { method: 'POST', body: JSON.stringify({ content: '<|separator|>' }) })).json();
  assert.ok(plain.tokens.length > 1, 'without parse_special the marker is text');
});

test('chat on a templated model: the prompt is tokenized with its special tokens', async (t) => {
  if (skip) return t.skip(skip);
  const r = await client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: 12, temperature: 0.8, seed: 1 });
  const tpl = await (await fetch(srv.base + '/apply-template', { method: 'POST', body: JSON.stringify({ messages: msgs }) })).json();
  const tok = await (await fetch(srv.base + '/tokenize', { method: 'POST', body: JSON.stringify({ content: tpl.prompt, parse_special: true }) })).json();
  assert.equal(r.usage.prompt_tokens, tok.tokens.length);
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(!r.choices[0].message.content.includes('<|separator|>'));
  // many seeds: a reply that ends on <|separator|> or <|eos|> says "stop" and
  // has fewer tokens than asked; one that runs out says "length"
  const ends = await Promise.all(Array.from({ length: 12 }, (_, seed) =>
    client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: 12, temperature: 1, seed })));
  for (const e of ends) {
    const c = e.choices[0];
    if (c.finish_reason === 'length') assert.equal(e.usage.completion_tokens, 12);
    else assert.equal(c.finish_reason, 'stop');
    assert.ok(!/<\|(separator|eos|pad)\|>/.test(c.message.content));
  }
});

test('ignore_eos (llama.cpp\'s field) generates through stop tokens', async (t) => {
  if (skip) return t.skip(skip);
  const body = (seed) => ({ model: 'm', messages: msgs, max_tokens: 12, temperature: 1, seed, ignore_eos: true });
  const all = await Promise.all(Array.from({ length: 12 }, (_, seed) => client.chat.completions.create(body(seed))));
  for (const e of all) {
    assert.equal(e.choices[0].finish_reason, 'length');
    assert.equal(e.usage.completion_tokens, 12);
    assert.ok(!/<\|(separator|eos|pad)\|>/.test(e.choices[0].message.content));
  }
  const bad = await fetch(srv.base + '/v1/chat/completions', { method: 'POST', body: JSON.stringify({ ...body(1), ignore_eos: 'yes' }) });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.param, 'ignore_eos');
});

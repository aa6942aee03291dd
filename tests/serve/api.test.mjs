// The OpenAI client (npm `openai` v6) against grok serve: response and chunk
// shapes, streamed == non-streamed, seeds, stop strings, lengths, usage,
// logprobs, batch invariance, and prompt-cache reuse.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer } from './server.mjs';

// SERVE_LIGHT=1 (set under ASan, where the model runs ~10x slower): the same
// checks on shorter texts.
const LIGHT = process.env.SERVE_LIGHT === '1';
let srv, client;
before(async () => {
  srv = await startServer(['-np', '8', '-c', '512']);
  client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'unused', maxRetries: 0 });
});
after(async () => { assert.equal(await srv.stop(), 0, 'clean exit on SIGTERM'); });

const chatMsgs = [{ role: 'system', content: 'You answer briefly.' }, { role: 'user', content: 'Tell me about the history of the nation.' }];

async function chatStream(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}
async function complStream(params) {
  const stream = await client.completions.create({ ...params, stream: true });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

test('chat completion: shape', async () => {
  const r = await client.chat.completions.create({ model: 'm', messages: chatMsgs, max_tokens: 16, temperature: 0 });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(typeof r.created, 'number');
  assert.equal(r.model, 'default.gguf');
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason));
  assert.equal(c.logprobs, null);
  const u = r.usage;
  assert.ok(u.prompt_tokens > 10);
  assert.ok(u.completion_tokens >= 1 && u.completion_tokens <= 16);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(typeof u.prompt_tokens_details.cached_tokens, 'number');
});

test('chat stream: chunk format, and the same text as non-streamed at temperature 0', async () => {
  const params = { model: 'm', messages: chatMsgs, max_tokens: 24, temperature: 0 };
  const whole = await client.chat.completions.create(params);
  const chunks = await chatStream({ ...params, stream_options: { include_usage: true } });
  // The server sends what the job produced since the client last read, so
  // a fast model may finish all 24 tokens before the first read: one chunk
  // with choices and the usage chunk is the least a correct stream holds.
  assert.ok(chunks.length >= 2);
  assert.ok(chunks.filter((c) => c.choices.length).length >= 1);
  const withChoices = chunks.filter((c) => c.choices.length);
  for (const c of chunks) {
    assert.equal(c.id, chunks[0].id);
    assert.equal(c.created, chunks[0].created);
    assert.equal(c.object, 'chat.completion.chunk');
    assert.match(c.id, /^chatcmpl-/);
  }
  assert.equal(withChoices[0].choices[0].delta.role, 'assistant');
  for (const c of withChoices.slice(1)) assert.equal(c.choices[0].delta.role, undefined);
  for (const c of withChoices.slice(0, -1)) {
    assert.equal(c.choices[0].finish_reason, null);
    assert.equal(c.usage, null);
  }
  const last = withChoices.at(-1);
  assert.equal(last.choices[0].finish_reason, whole.choices[0].finish_reason);
  const usage = chunks.at(-1);
  assert.equal(usage.choices.length, 0);
  assert.deepEqual(usage.usage.completion_tokens, whole.usage.completion_tokens);
  assert.deepEqual(usage.usage.prompt_tokens, whole.usage.prompt_tokens);
  const text = withChoices.map((c) => c.choices[0].delta.content ?? '').join('');
  assert.equal(text, whole.choices[0].message.content);
});

test('completions: shape, stream == non-stream, no usage chunk unless asked', async () => {
  const params = { model: 'm', prompt: 'The history of', max_tokens: 20, temperature: 0 };
  const whole = await client.completions.create(params);
  assert.match(whole.id, /^cmpl-/);
  assert.equal(whole.object, 'text_completion');
  assert.equal(whole.choices[0].finish_reason, 'length');
  assert.equal(whole.usage.completion_tokens, 20);
  const chunks = await complStream(params);
  for (const c of chunks) {
    assert.equal(c.id, chunks[0].id);
    assert.equal(c.object, 'text_completion');
    assert.equal(c.usage, undefined);
  }
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
  assert.equal(chunks.map((c) => c.choices[0].text).join(''), whole.choices[0].text);
});

test('token-id prompts give the same as the text they encode', async () => {
  const tok = await (await fetch(srv.base + '/tokenize', { method: 'POST', body: JSON.stringify({ content: 'The history of' }) })).json();
  const a = await client.completions.create({ model: 'm', prompt: 'The history of', max_tokens: 8, temperature: 0 });
  const b = await client.completions.create({ model: 'm', prompt: tok.tokens, max_tokens: 8, temperature: 0 });
  assert.equal(b.choices[0].text, a.choices[0].text);
  assert.equal(a.usage.prompt_tokens, tok.tokens.length);
  const de = await (await fetch(srv.base + '/detokenize', { method: 'POST', body: JSON.stringify({ tokens: tok.tokens }) })).json();
  assert.equal(de.content, 'The history of');
});

test('the same seed gives the same text; other seeds differ', async () => {
  const p = { model: 'm', prompt: 'In the year', max_tokens: 24, temperature: 1.0 };
  const a = await client.completions.create({ ...p, seed: 42 });
  const b = await client.completions.create({ ...p, seed: 42 });
  assert.equal(a.choices[0].text, b.choices[0].text);
  const others = await Promise.all([1, 2, 3].map((seed) => client.completions.create({ ...p, seed })));
  assert.ok(others.some((o) => o.choices[0].text !== a.choices[0].text), 'seeds 1-3 all gave seed 42\'s text');
});

test('stop strings end the text before them, never partly streamed', async () => {
  const p = { model: 'm', prompt: 'The history of', max_tokens: 40, temperature: 0 };
  const free = (await client.completions.create(p)).choices[0].text;
  // a stop string that spans tokens, taken from the middle of the free text
  const at = free.indexOf(' States', 8);
  assert.ok(at > 0, 'the free text has a later " States": ' + free);
  const stop = ' States';
  const want = free.slice(0, free.indexOf(stop));
  const r = await client.completions.create({ ...p, stop: [stop, 'zzzz'] });
  assert.equal(r.choices[0].text, want);
  assert.equal(r.choices[0].finish_reason, 'stop');
  const chunks = await complStream({ ...p, stop });
  assert.equal(chunks.map((c) => c.choices[0].text).join(''), want);
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
  // chat too
  const c = await client.chat.completions.create({ model: 'm', messages: chatMsgs, max_tokens: 30, temperature: 0 });
  const text = c.choices[0].message.content;
  const word = text.split(' ').find((w, i) => i > 1 && w.length > 2);
  if (word) {
    const cs = await chatStream({ model: 'm', messages: chatMsgs, max_tokens: 30, temperature: 0, stop: word });
    const streamed = cs.map((x) => x.choices[0]?.delta?.content ?? '').join('');
    assert.equal(streamed, text.slice(0, text.indexOf(word)));
    assert.equal(cs.at(-1).choices[0].finish_reason, 'stop');
  }
});

test('max_tokens and max_completion_tokens give finish_reason length', async () => {
  const a = await client.chat.completions.create({ model: 'm', messages: chatMsgs, max_completion_tokens: 3, temperature: 0 });
  assert.equal(a.choices[0].finish_reason, 'length');
  assert.equal(a.usage.completion_tokens, 3);
  const b = await client.completions.create({ model: 'm', prompt: 'The', max_tokens: 1, temperature: 0 });
  assert.equal(b.choices[0].finish_reason, 'length');
  assert.equal(b.usage.completion_tokens, 1);
});

test('logprobs: chat and completions', async () => {
  const r = await client.chat.completions.create({ model: 'm', messages: chatMsgs, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3 });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, r.usage.completion_tokens);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
    assert.ok(t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob);
    // greedy: the chosen token is the most likely one
    assert.equal(t.token, t.top_logprobs[0].token);
    assert.ok(Math.abs(t.logprob - t.top_logprobs[0].logprob) < 1e-6);
    assert.deepEqual(Buffer.from(t.bytes).toString('utf8'), t.token);
  }
  const chunks = await chatStream({ model: 'm', messages: chatMsgs, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 });
  const streamed = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
  assert.deepEqual(streamed.map((t) => t.token), lp.map((t) => t.token));
  const c = await client.completions.create({ model: 'm', prompt: 'The history of', max_tokens: 5, temperature: 0, logprobs: 2 });
  const l = c.choices[0].logprobs;
  assert.equal(l.tokens.length, 5);
  assert.equal(l.token_logprobs.length, 5);
  assert.equal(l.tokens.join(''), c.choices[0].text);
  assert.equal(Object.keys(l.top_logprobs[0]).length, 2);
  assert.equal(l.text_offset[0], 0);
});

test('penalties and llama.cpp sampling fields are accepted and change the text', async () => {
  const p = { model: 'm', prompt: 'The history of', max_tokens: 30, temperature: 0 };
  const plain = (await client.completions.create(p)).choices[0].text;
  const pen = (await client.completions.create({ ...p, frequency_penalty: 2, presence_penalty: 1 })).choices[0].text;
  assert.notEqual(pen, plain);
  const rep = await client.completions.create({ ...p, repeat_penalty: 1.5, top_k: 10, min_p: 0.1 });
  assert.notEqual(rep.choices[0].text, plain);
});

async function runAll(prompts, seed) {
  return Promise.all(prompts.map((prompt) =>
    client.completions.create({ model: 'm', prompt, max_tokens: LIGHT ? 8 : 24, temperature: seed ? 0.9 : 0, seed })
      .then((r) => r.choices[0].text)));
}

test('batch invariance: 4 and 8 concurrent requests each give what they give alone', async () => {
  const prompts = ['The history of', 'Our nation is', 'In the year 1850', 'The Congress shall',
    'We have seen the', 'He said that the', 'The President of the', 'It was a dark night'];
  for (const seed of LIGHT ? [7] : [undefined, 7]) {
    const alone = [];
    for (const p of prompts) alone.push((await runAll([p], seed))[0]);
    assert.deepEqual(await runAll(prompts.slice(0, 4), seed), alone.slice(0, 4));
    assert.deepEqual(await runAll(prompts, seed), alone);
    // a long prompt prefilling beside the others changes nothing either
    const long = 'The history of the United States '.repeat(LIGHT ? 10 : 40);
    const [, ...rest] = await Promise.all([runAll([long], seed), runAll(prompts, seed)]);
    assert.deepEqual(rest[0], alone);
  }
});

// The server's own time to first token of the one request in flight, from the
// sum of its TTFT histogram (from queueing to the first token, milliseconds):
// the prefill the cache saves, without the client's and HTTP's jitter, which on
// a fast machine is as large as the whole prefill of this prompt.
async function serverTtft(run) {
  const read = async () => {
    const m = await (await fetch(srv.base + '/metrics')).text();
    return [Number(/^grok_time_to_first_token_seconds_sum (\S+)$/m.exec(m)[1]),
      Number(/^grok_time_to_first_token_seconds_count (\d+)$/m.exec(m)[1])];
  };
  const [s0, n0] = await read();
  const r = await run();
  const [s1, n1] = await read();
  assert.equal(n1, n0 + 1, 'one request timed');
  return { ms: (s1 - s0) * 1000, r };
}

test('a repeated prompt reports cached tokens and a lower time to first token', async () => {
  const long = 'Fellow citizens of the Senate and of the House of Representatives. '.repeat(LIGHT ? 12 : 30);
  async function warmOne() {
    const stream = await client.completions.create({ model: 'm', prompt: long, max_tokens: 2, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = 0, usage = null;
    for await (const c of stream) {
      if (c.choices.length) text++;
      if (c.usage) usage = c.usage;
    }
    assert.ok(text >= 1 && usage, 'a streamed reply with usage');
    return usage;
  }
  // a fresh prompt (a different start, so no slot holds it) against repeats;
  // medians of 5, against a difference of about 60x (a 430-token prefill
  // against one token)
  const cold = [];
  for (let i = 0; i < 5; i++) {
    const { ms, r } = await serverTtft(() => client.completions.create({ model: 'm', prompt: `${i} cold ` + long, max_tokens: 2, temperature: 0 }));
    cold.push(ms);
    assert.ok(r.usage.prompt_tokens_details.cached_tokens < 5);
  }
  await warmOne();
  const warm = [];
  for (let i = 0; i < 5; i++) {
    const { ms, r: usage } = await serverTtft(warmOne);
    assert.ok(usage.prompt_tokens_details.cached_tokens >= usage.prompt_tokens - 1,
      JSON.stringify(usage));
    warm.push(ms);
  }
  const med = (a) => [...a].sort((x, y) => x - y)[2];
  assert.ok(med(warm) < med(cold), `warm TTFT ${med(warm)} ms >= cold ${med(cold)} ms ` +
    `(warm ${warm.map((x) => x.toFixed(2))}, cold ${cold.map((x) => x.toFixed(2))})`);
});

test('models, health, metrics, apply-template', async () => {
  const models = await client.models.list();
  assert.equal(models.data[0].id, 'default.gguf');
  assert.equal((await fetch(srv.base + '/health')).status, 200);
  const m = await (await fetch(srv.base + '/metrics')).text();
  assert.match(m, /^grok_requests_total \d+$/m);
  assert.match(m, /^grok_time_to_first_token_seconds_bucket\{le="\+Inf"\} \d+$/m);
  assert.match(m, /^grok_inter_token_seconds_count \d+$/m);
  assert.match(m, /^grok_queue_length 0$/m);
  const t = await (await fetch(srv.base + '/apply-template', { method: 'POST', body: JSON.stringify({ messages: chatMsgs }) })).json();
  // the default model is a base model: a plain transcript in Grok-2's form
  assert.equal(t.prompt, 'System: You answer briefly.\n\nHuman: Tell me about the history of the nation.\n\nAssistant:');
  assert.equal(t.templated, false);
});

test('chat on a base model continues the transcript up to a next turn', async () => {
  // the default model has no chat template: its chat reply is the greedy completion
  // of /apply-template's prompt, without the leading space, cut before a next
  // "\nHuman:" or "\nSystem:" turn
  const msgs = [...chatMsgs, { role: 'assistant', content: 'It is old.' }, { role: 'user', content: 'And the war?' }];
  const t = await (await fetch(srv.base + '/apply-template', { method: 'POST', body: JSON.stringify({ messages: msgs }) })).json();
  assert.equal(t.templated, false);
  assert.ok(t.prompt.endsWith('Human: And the war?\n\nAssistant:'), t.prompt);
  const n = LIGHT ? 12 : 48;
  const c = await client.completions.create({ model: 'm', prompt: t.prompt, max_tokens: n, temperature: 0 });
  const r = await client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: n, temperature: 0 });
  let want = c.choices[0].text.replace(/^[ \t\r\n]+/, ''), why = c.choices[0].finish_reason;
  for (const turn of ['\nHuman:', '\nSystem:']) {
    const at = want.indexOf(turn);
    if (at >= 0) want = want.slice(0, at), why = 'stop';
  }
  assert.equal(r.choices[0].message.content, want);
  assert.equal(r.choices[0].finish_reason, why);
  assert.equal(r.usage.prompt_tokens, c.usage.prompt_tokens);
});

test('more generating slots than the batch holds: every stream advances, same texts', async () => {
  const s = await startServer(['-np', '6', '-b', '4', '-c', '256']);
  try {
    const c = new OpenAI({ baseURL: s.base + '/v1', apiKey: 'unused', maxRetries: 0 });
    const prompts = ['The history of', 'Our nation is', 'In the year 1850', 'The Congress shall', 'We have seen the', 'He said that the'];
    const one = (prompt, cl) => cl.completions.create({ model: 'm', prompt, max_tokens: LIGHT ? 6 : 16, temperature: 0 }).then((r) => r.choices[0].text);
    const alone = [];
    for (const p of prompts) alone.push(await one(p, client));
    assert.deepEqual(await Promise.all(prompts.map((p) => one(p, c))), alone);
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

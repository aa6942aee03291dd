#!/usr/bin/env node
// serve_bench.mjs - load test of an OpenAI-compatible server (grok serve or
// llama-server): for each client count, every client sends R streamed
// completions one after another (distinct prompts, so no prompt cache helps),
// and the script prints the aggregate generation rate (completion tokens over
// wall time) and the time to first token, p50 and p99.
//
// usage: node bench/serve_bench.mjs BASE_URL [--clients 1,4,16] [--requests 4]
//                                   [--max-tokens 64] [--prompt-words 48]
//                                   [--temperature 0]
const args = process.argv.slice(2);
const base = args[0];
if (!base) { console.error('usage: serve_bench.mjs BASE_URL [--clients 1,4,16] [--requests N] [--max-tokens N] [--prompt-words N] [--temperature T]'); process.exit(2); }
const opt = (name, def) => { const i = args.indexOf('--' + name); return i > 0 ? args[i + 1] : def; };
const clients = opt('clients', '1,4,16').split(',').map(Number);
const R = Number(opt('requests', '4'));
const maxTokens = Number(opt('max-tokens', '64'));
const words = Number(opt('prompt-words', '48'));
const temperature = Number(opt('temperature', '0')); // > 0: seeded sampling, as chat clients do
const vocab = ['the', 'history', 'of', 'nation', 'people', 'congress', 'year', 'great', 'war', 'peace', 'and', 'state'];

async function one(id) {
  const prompt = `${id}: ` + Array.from({ length: words }, (_, i) => vocab[(id * 7 + i * 3) % vocab.length]).join(' ');
  const t0 = performance.now();
  const res = await fetch(base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature, seed: id, stream: true,
      stream_options: { include_usage: true }, ignore_eos: true }),
  });
  if (!res.ok) throw new Error(`${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', ttft = null, tokens = 0, chunks = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const o = JSON.parse(ev.slice(6));
      if (o.choices?.length && o.choices[0].text) { chunks++; if (ttft === null) ttft = performance.now() - t0; }
      if (o.usage) tokens = o.usage.completion_tokens;
    }
  }
  return { ttft, tokens: tokens || chunks };
}

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
let next = 0;
console.log(`clients  requests  tokens  wall_s  agg_tok/s  ttft_p50_ms  ttft_p99_ms`);
for (const c of clients) {
  const t0 = performance.now();
  const results = [];
  await Promise.all(Array.from({ length: c }, async () => { for (let i = 0; i < R; i++) results.push(await one(next++)); }));
  const wall = (performance.now() - t0) / 1000;
  const toks = results.reduce((s, r) => s + r.tokens, 0);
  const ttfts = results.map((r) => r.ttft).filter((x) => x !== null);
  console.log(`${String(c).padStart(7)}  ${String(results.length).padStart(8)}  ${String(toks).padStart(6)}  ${wall.toFixed(1).padStart(6)}  ${(toks / wall).toFixed(2).padStart(9)}  ${pct(ttfts, 0.5).toFixed(0).padStart(11)}  ${pct(ttfts, 0.99).toFixed(0).padStart(11)}`);
}

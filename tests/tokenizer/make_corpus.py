#!/usr/bin/env python3
"""Builds the tokenizer test corpus, deterministically (fixed seed, no input but
corpus/seed.txt), so that every run of the parity tests and the benchmark sees
the same bytes.

    make_corpus.py OUT_DIR [--size BYTES]

Writes OUT_DIR/corpus.txt (valid UTF-8, about 1.2 MB by default) and
OUT_DIR/invalid.txt (lines with malformed UTF-8, for the SentencePiece check).

corpus.txt mixes, in shuffled blocks: the seed sentences (prose in about thirty
languages and scripts, code, math, emoji), synthetic prose recombined from the
seed's words, source code in several languages, numbers in many formats,
whitespace runs (spaces, tabs, newlines, CRLF), emoji sequences (ZWJ, skin tones,
flags, keycaps), CJK runs, contractions in mixed case, special-token look-alikes,
and characters drawn from many Unicode blocks. It avoids U+0085, U+180E and
U+FEFF, where JavaScript's \\s (the npm peer) and PCRE2's disagree.
"""
import os
import random
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
AVOID = {0x85, 0x180E, 0xFEFF}


def load_seed():
    blocks, cur = {}, None
    with open(os.path.join(HERE, "corpus", "seed.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                cur = line[1:-1]
                blocks[cur] = []
            elif cur:
                blocks[cur].append(line)
    return blocks


NO_SPACE = {"zh", "zh-Hant", "ja", "th", "km"}


def words_of(blocks):
    words = {}
    for lang, lines in blocks.items():
        if lang.startswith("code") or lang in ("special", "emoji", "math"):
            continue
        if lang in NO_SPACE:
            chars = [c for l in lines for c in l if not unicodedata.category(c).startswith("P")]
            words[lang] = ["".join(chars[i:i + random.randint(1, 4)]) for i in range(0, len(chars), 2)]
        else:
            words[lang] = [w.strip(".,;:!?¿¡\"()—«»") for l in lines for w in l.split()]
            words[lang] = [w for w in words[lang] if w]
    return words


def number(r):
    k = r.randrange(12)
    if k == 0:
        return str(r.randrange(10))
    if k == 1:
        return str(r.randrange(10 ** r.randint(2, 40)))
    if k == 2:
        return f"{r.uniform(-1e6, 1e6):.{r.randint(1, 8)}f}"
    if k == 3:
        return f"{r.randrange(10**9):,}"
    if k == 4:
        return f"{r.randint(1900, 2099)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
    if k == 5:
        return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"
    if k == 6:
        return ".".join(str(r.randrange(256)) for _ in range(4))
    if k == 7:
        return f"v{r.randint(0, 20)}.{r.randint(0, 99)}.{r.randint(0, 999)}"
    if k == 8:
        return f"+{r.randint(1, 99)} {r.randint(100, 999)} {r.randint(1000000, 9999999)}"
    if k == 9:
        return f"0x{r.getrandbits(r.choice([8, 16, 32, 64])):X}"
    if k == 10:
        return f"{r.uniform(0, 1):.3e}"
    return "".join(r.choice("0123456789") for _ in range(r.randint(1, 12))) + r.choice(["%", "€", "$", "km", "ms", ""])


EMOJI = ["😀", "😂", "🥲", "🤔", "🙈", "🚀", "🌍", "🔥", "✨", "🎉", "🍕", "🐍", "🦀", "🦙", "⚡", "✅", "❌",
         "⭐", "☕", "🧪", "📦", "🔧", "💡", "🐈", "🐕", "🌸", "🍣", "🏳️‍🌈", "👩‍💻", "🧑‍🚀", "👨‍👩‍👧",
         "❤️", "☺️", "✌️"]
TONES = ["\U0001F3FB", "\U0001F3FC", "\U0001F3FD", "\U0001F3FE", "\U0001F3FF"]
FLAGS = ["JP", "FR", "BR", "UA", "US", "DE", "IN", "KE", "NZ", "CA", "MX", "KR"]


def emoji(r):
    k = r.randrange(5)
    if k == 0:
        return r.choice(["👍", "👋", "🙌", "👏", "🤝", "💪"]) + r.choice(TONES)
    if k == 1:
        return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in r.choice(FLAGS))
    if k == 2:
        return r.choice("0123456789#*") + "\ufe0f\u20e3"
    return "".join(r.choice(EMOJI) for _ in range(r.randint(1, 5)))


CONTRACTIONS = ["I'M", "it'S", "we'Ve", "THEY'LL", "you'd", "He'd", "can't", "WON'T", "o'clock",
                "'s", "y'all", "rock'n'roll", "it’s", "l'homme", "dell'arte"]
SPECIALS = ["<|endoftext|>", "<|separator|>", "<|eos|>", "<|pad|>", "[BOS]", "[EOS]", "[PAD]",
            "[UNK]", "<s>", "</s>", "<unk>", "<|control3|>", "<|reserved_99|>", "<|mask|>",
            "<0x41>", "<|fim_prefix|>"]


def prose(r, words):
    lang = r.choice(sorted(words))
    ws = words[lang]
    n = r.randint(3, 24)
    out = []
    for i in range(n):
        w = r.choice(ws)
        if r.random() < 0.06:
            w = number(r)
        elif r.random() < 0.03:
            w = emoji(r)
        elif r.random() < 0.03:
            w = r.choice(CONTRACTIONS)
        elif r.random() < 0.01:
            w = r.choice(SPECIALS)
        if r.random() < 0.08:
            w = w.upper() if r.random() < 0.5 else w.capitalize()
        if r.random() < 0.05:
            w = r.choice(['"', "'", "(", "«", "„", "“"]) + w + r.choice(['"', "'", ")", "»", "“", "”"])
        out.append(w)
    sep = "" if lang in NO_SPACE else " "
    s = sep.join(out)
    if s and lang not in NO_SPACE:
        s = s[0].upper() + s[1:]
    return s + r.choice([".", ".", ".", "!", "?", "…", ";", ":", "。", "！", "", "...", "?!"])


IDENTS = ["buf", "len", "tokens", "vocab", "merge_rank", "n_vocab", "ctx", "i", "j", "k", "x", "err",
          "UserAccount", "parse_json", "getElementById", "HashMap", "kv_cache", "θ", "naïve_count", "日本"]


def ident(r):
    w = r.choice(IDENTS)
    if r.random() < 0.3:
        w += str(r.randrange(100))
    if r.random() < 0.2:
        w = w + "_" + r.choice(IDENTS)
    return w


def code(r):
    ind = r.choice(["", "  ", "    ", "        ", "\t", "\t\t", "\t    "])
    a, b, c = ident(r), ident(r), ident(r)
    k = r.randrange(10)
    if k == 0:
        return f"{ind}for (int {a} = 0; {a} < {b}; {a}++) {{ {c}[{a}] += {number(r)}; }}"
    if k == 1:
        return f"{ind}if ({a} != NULL && {b}->{c} >= {number(r)}) return -1; // {prose_cache[r.randrange(len(prose_cache))]}"
    if k == 2:
        return f"{ind}def {a}({b}, {c}=None):\n{ind}    return [{b}.get(x, {number(r)}) for x in {c} or ()]"
    if k == 3:
        return f"{ind}const {a} = await fetch(`https://example.com/api/{b}?q=${{{c}}}&n={number(r)}`);"
    if k == 4:
        return f"{ind}let {a}: Vec<u8> = {b}.iter().map(|x| x.wrapping_mul({number(r)})).collect::<Vec<_>>();"
    if k == 5:
        return f'{ind}printf("%s: %d\\n\\t%08x\\r\\n", "{a}", {b}, 0x{r.getrandbits(32):08x});'
    if k == 6:
        return f"{ind}<{a} class=\"{b}\" data-id='{number(r)}'>&lt;{c}&gt;</{a}>"
    if k == 7:
        return f'{ind}{{"{a}": [{number(r)}, {number(r)}, null, true], "{b}": {{"{c}": "\\u00e9\\n"}}}}'
    if k == 8:
        return f"{ind}{a} <<= 2; {b} >>>= 1; {c} ??= {a} ?? {b}; {a} === {b} !== {c} && !{a} || ~{b};"
    return f"{ind}# {a}: {prose_cache[r.randrange(len(prose_cache))]}"


def whitespace(r):
    k = r.randrange(8)
    if k == 0:
        return " " * r.randint(1, 40) + r.choice(["x", "Hello", "", "·", "1"])
    if k == 1:
        return "\t" * r.randint(1, 12) + r.choice(["}", "end", "", "return"])
    if k == 2:
        return "\n" * r.randint(1, 15)
    if k == 3:
        return "".join(r.choice([" ", "\t", " \t", "  "]) for _ in range(r.randint(1, 10))) + "a"
    if k == 4:
        return r.choice(["line\r", "crlf\r\nnext\r", "\r\r", " \r\n "])
    if k == 5:
        return "word" + " " * r.randint(2, 9) + "word" + " " * r.randint(1, 6)
    if k == 6:
        return r.choice(["\u00a0", "\u2003", "\u3000", "\u2009", "\u202f", "\x0b", "\x0c"]) * r.randint(1, 4) + "y"
    return "\n" + " " * r.randint(0, 8) + "\n" * r.randint(0, 4) + "\t"


def cjk(r, blocks):
    chars = "".join(l for lang in ("zh", "zh-Hant", "ja", "ko") for l in blocks[lang])
    s = "".join(r.choice(chars) for _ in range(r.randint(5, 60)))
    if r.random() < 0.3:
        s += "".join(chr(r.randint(0xFF10, 0xFF5A)) for _ in range(r.randint(1, 6)))
    if r.random() < 0.2:
        s += "".join(chr(r.randint(0x4E00, 0x9FA5)) for _ in range(r.randint(1, 10)))
    return s


BLOCKS = [(0x00C0, 0x024F), (0x0250, 0x02AF), (0x0370, 0x03FF), (0x0400, 0x052F), (0x0531, 0x058A),
          (0x05D0, 0x05EA), (0x0600, 0x06FF), (0x0900, 0x097F), (0x0980, 0x09FF), (0x0E00, 0x0E7F),
          (0x0F00, 0x0FDA), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x13A0, 0x13F5), (0x16A0, 0x16F0),
          (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2100, 0x218B), (0x2190, 0x23FF), (0x2500, 0x27BF),
          (0x2800, 0x28FF), (0x3040, 0x30FF), (0xAC00, 0xD7A3), (0xFB00, 0xFDFF), (0xFE30, 0xFEFE),
          (0x10330, 0x1034A), (0x13000, 0x1342E), (0x1D400, 0x1D7FF), (0x1F300, 0x1FAFF),
          (0x20000, 0x2A6DF), (0x0300, 0x036F)]


def rare(r):
    out = []
    lo, hi = r.choice(BLOCKS)
    while len(out) < r.randint(1, 25):
        cp = r.randint(lo, hi)
        if cp in AVOID:
            continue
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat in ("Cn", "Cs", "Co") or cat == "Zl" or cat == "Zp":
            continue
        if cat.startswith("M") and not out:
            out.append("e")  # give a combining mark something to combine with
        out.append(ch)
    return "".join(out)


def controls(r):
    return "".join(chr(r.choice([1, 2, 7, 8, 0x1b, 0x7f, 0x1f])) for _ in range(r.randint(1, 3))) + "ok"


prose_cache = []


def build(size):
    r = random.Random(20240229)
    random.seed(1)
    blocks = load_seed()
    words = words_of(blocks)
    seed_lines = [l for lang in blocks for l in blocks[lang]]
    global prose_cache
    prose_cache = [prose(r, words) for _ in range(200)]
    parts = ["\n".join(seed_lines), "\n"]
    total = sum(len(p.encode()) for p in parts)
    kinds = ["prose"] * 30 + ["code"] * 12 + ["seed"] * 8 + ["ws"] * 8 + ["num"] * 5 + ["emoji"] * 4 + \
            ["cjk"] * 6 + ["rare"] * 5 + ["contr"] * 2 + ["special"] * 2 + ["ctrl"] * 1
    while total < size:
        k = r.choice(kinds)
        if k == "prose":
            s = " ".join(prose(r, words) for _ in range(r.randint(1, 6)))
        elif k == "code":
            s = "\n".join(code(r) for _ in range(r.randint(1, 8)))
        elif k == "seed":
            s = r.choice(seed_lines)
        elif k == "ws":
            s = whitespace(r)
        elif k == "num":
            s = " ".join(number(r) for _ in range(r.randint(1, 8)))
        elif k == "emoji":
            s = "".join(emoji(r) + r.choice(["", " ", "  "]) for _ in range(r.randint(1, 6)))
        elif k == "cjk":
            s = cjk(r, blocks)
        elif k == "rare":
            s = rare(r)
        elif k == "contr":
            s = " ".join(r.choice(CONTRACTIONS) for _ in range(r.randint(1, 5)))
        elif k == "special":
            s = r.choice(SPECIALS) + r.choice(["", " ", "x", "\n"]) + r.choice(SPECIALS)
        else:
            s = controls(r)
        s += r.choice(["\n", "\n", "\n", " ", "", "\n\n", "  \n", "\t\n"])
        parts.append(s)
        total += len(s.encode())
    return "".join(parts)


def invalid_lines():
    r = random.Random(7)
    bad = [b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80",
           b"\xf0\x9f\x98", b"\xc3", b"\xfe\xfe\xff", b"\xe0\x80\x80", b"\xf8\x88\x80\x80\x80"]
    lines = []
    for i in range(300):
        parts = []
        for _ in range(r.randint(1, 6)):
            parts.append(r.choice([b"abc", b" ", "héllo".encode(), "日本".encode(), b"  ", b"\t", b"12",
                                   "😀".encode(), r.choice(bad)]))
        lines.append(b"".join(parts))
    return b"\n".join(lines) + b"\n"


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    out = sys.argv[1]
    size = 1_200_000
    if len(sys.argv) > 3 and sys.argv[2] == "--size":
        size = int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    text = build(size)
    with open(os.path.join(out, "corpus.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(text)
    with open(os.path.join(out, "invalid.txt"), "wb") as f:
        f.write(invalid_lines())


if __name__ == "__main__":
    main()

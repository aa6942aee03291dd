# Tokenizer tests beyond the unit tests (tests/unit/test_tok*.c):
#   tok_tool          helper that encodes files (tests/tokenizer/tok_tool.c)
#   tok_spm_parity    Grok-1's tokenizer against Debian's spm_encode on a 1 MB corpus
#   tok_bpe_parity    cl100k_base / o200k_base against the npm peer gpt-tokenizer
#   tok_roundtrip     decode(encode(x)) == x on the corpus
#   fuzz_tok_*        libFuzzer targets (GK_FUZZ only), bounded runs
# Each skips (77) with a message when its peer or data is missing.
set(GK_TOK_DIR ${CMAKE_SOURCE_DIR}/tests/tokenizer)

add_executable(tok_tool ${GK_TOK_DIR}/tok_tool.c)
target_link_libraries(tok_tool PRIVATE grokcore)

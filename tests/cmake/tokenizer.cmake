# Tokenizer tests beyond the unit tests (tests/unit/test_tok*.c):
#   tok_tool          helper that encodes files (tests/tokenizer/tok_tool.c)
#   tok_spm_parity    Grok-1's tokenizer against Debian's spm_encode on a 1 MB corpus
#   tok_bpe_parity    cl100k_base / o200k_base against the npm peer gpt-tokenizer
#   tok_roundtrip     decode(encode(x)) == x on the corpus
# Each skips (77) with a message when its peer or data is missing.
set(GK_TOK_DIR ${CMAKE_SOURCE_DIR}/tests/tokenizer)

add_executable(tok_tool ${GK_TOK_DIR}/tok_tool.c)
target_link_libraries(tok_tool PRIVATE grokcore)

# The corpus (make_corpus.py, deterministic) is built once per test run by a
# fixture that the parity tests require.
set(GK_TOK_CORPUS ${CMAKE_CURRENT_BINARY_DIR}/tok_corpus)
set(GK_TOK_PARITY ${GK_PYTHON} ${GK_TOK_DIR}/parity.py)
add_test(NAME tok_corpus COMMAND ${GK_TOK_PARITY} corpus --out ${GK_TOK_CORPUS})
set_tests_properties(tok_corpus PROPERTIES FIXTURES_SETUP tok_corpus TIMEOUT 120)

foreach(what spm bpe roundtrip)
  add_test(NAME tok_${what}_parity
           COMMAND ${GK_TOK_PARITY} ${what} --tool $<TARGET_FILE:tok_tool> --corpus ${GK_TOK_CORPUS}
                   --testdata ${GK_TESTDATA} --peer-dir ${GK_TOK_DIR})
  set_tests_properties(tok_${what}_parity PROPERTIES FIXTURES_REQUIRED tok_corpus
                       SKIP_RETURN_CODE 77 TIMEOUT 300 ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
endforeach()

# The tokenizer's fuzz targets (fuzz_tok_load, fuzz_tok_encode) are made with every
# other one in tests/cmake/fuzz.cmake, from the committed seeds in
# tests/fuzz/corpus/tok_*/ (tests/tokenizer/make_fuzz_seeds.py writes them).

# grok chat / grok tokenize / grok run with text, end to end on small random
# models that carry a tokenizer (skips while the CLI lacks the chat command).
add_test(NAME tok_chat_e2e
         COMMAND ${GK_PYTHON} ${GK_TOK_DIR}/chat_test.py --grok $<TARGET_FILE:grok>
                 --workdir ${CMAKE_CURRENT_BINARY_DIR}/tok_chat)
set_tests_properties(tok_chat_e2e PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
                     ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")

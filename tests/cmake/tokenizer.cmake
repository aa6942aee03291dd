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

# Fuzz targets (GK_FUZZ=ON, clang), as tests/cmake/fuzz.cmake does for GGUF: a
# libFuzzer executable per target and a bounded, repeatable ctest run from the
# committed seeds in tests/fuzz/corpus/<corpus>/ (tests/tokenizer/make_fuzz_seeds.py
# writes them). fuzz.cmake, included before this file, already instruments
# grokcore for coverage.
if(GK_FUZZ)
  function(gk_tok_add_fuzzer name corpus max_len runs)
    add_executable(${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/${name}.c)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE grokcore)
    set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz/${name})
    file(MAKE_DIRECTORY ${work}/corpus)
    add_test(NAME ${name}
             COMMAND ${name} -seed=1 -runs=${runs} -max_len=${max_len} -timeout=10
                     -rss_limit_mb=2048 -artifact_prefix=${work}/ ${work}/corpus
                     ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${corpus})
    set_tests_properties(${name} PROPERTIES TIMEOUT 180)
  endfunction()
  gk_tok_add_fuzzer(fuzz_tok_load tok_load 16384 3000)
  gk_tok_add_fuzzer(fuzz_tok_encode tok_encode 4096 20000)
endif()

# grok chat / grok tokenize / grok run with text, end to end on small random
# models that carry a tokenizer (skips while the CLI lacks the chat command).
add_test(NAME tok_chat_e2e
         COMMAND ${GK_PYTHON} ${GK_TOK_DIR}/chat_test.py --grok $<TARGET_FILE:grok>
                 --workdir ${CMAKE_CURRENT_BINARY_DIR}/tok_chat)
set_tests_properties(tok_chat_e2e PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
                     ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")

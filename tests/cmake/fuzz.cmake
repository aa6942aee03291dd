# Fuzz targets and their corpora.
#
# Each target is tests/fuzz/<name>.c defining LLVMFuzzerTestOneInput, with its
# committed corpus in tests/fuzz/corpus/<corpus>/: small valid seeds, the entries
# campaigns added (scripts/fuzz.sh merge) and every past finding. A parser adds
# its target with one line at the end of this file,
#   gk_add_fuzzer(fuzz_<what> <what> [MAX_LEN n] [RUNS n])
# (the fuzz_ prefix is how `make fuzz` finds a target; <what> names its corpus
# directory, where `make fuzz` takes its seeds from), which gives:
#
#   fuzz_replay_<corpus>  (every build) replay_<name> runs the target once on each
#                         committed input: the corpus is a regression test, in the
#                         release build and under ASan + UBSan.
#   <name>                (GK_FUZZ=ON, clang) the libFuzzer executable, and a ctest
#                         run of it for a bounded number of inputs starting from
#                         the committed corpus alone: its working corpus in the
#                         build tree is emptied first, so that each run is the same.
#
# `make fuzz` (scripts/fuzz.sh) runs every fuzz_* target for longer.
set(GK_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)

function(gk_add_replay name corpus)
  add_executable(replay_${name} ${GK_FUZZ_DIR}/${name}.c ${GK_FUZZ_DIR}/replay.c)
  target_link_libraries(replay_${name} PRIVATE grokcore)
  add_test(NAME fuzz_replay_${corpus}
           COMMAND replay_${name} ${GK_FUZZ_DIR}/corpus/${corpus})
  set_tests_properties(fuzz_replay_${corpus} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)
endfunction()

# gk_add_fuzzer(name corpus [MAX_LEN n] [RUNS n])
function(gk_add_fuzzer name corpus)
  cmake_parse_arguments(F "" "MAX_LEN;RUNS" "" ${ARGN})
  if(NOT F_MAX_LEN)
    set(F_MAX_LEN 4096)
  endif()
  if(NOT F_RUNS)
    set(F_RUNS 20000)
  endif()
  gk_add_replay(${name} ${corpus})
  if(NOT GK_FUZZ)
    return()
  endif()
  add_executable(${name} ${GK_FUZZ_DIR}/${name}.c)
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE grokcore)
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz/${name})
  # A fixed seed and run count keep the test bounded and repeatable; crashes are
  # written to the build tree as crash-* files, to replay with `${name} FILE`.
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} -DFUZZER=$<TARGET_FILE:${name}> -DWORK=${work}
                   -DSEEDS=${GK_FUZZ_DIR}/corpus/${corpus}
                   "-DFLAGS=-seed=1;-runs=${F_RUNS};-max_len=${F_MAX_LEN};-timeout=10;-rss_limit_mb=2048"
                   -P ${GK_FUZZ_DIR}/run_short.cmake)
  set_tests_properties(${name} PROPERTIES TIMEOUT 180)
endfunction()

if(GK_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "GK_FUZZ needs clang (configure with CC=clang)")
  endif()
  # Coverage instrumentation in the library, so that libFuzzer sees which branches
  # of the parsers an input reaches. The instrumentation calls into a runtime that
  # only ASan or libFuzzer provide, so every program linked with grokcore (the CLI,
  # the unit tests) links that runtime too.
  target_compile_options(grokcore PRIVATE -fsanitize=fuzzer-no-link)
  target_link_options(grokcore INTERFACE -fsanitize=fuzzer-no-link)
endif()

gk_add_fuzzer(fuzz_gguf gguf)
gk_add_fuzzer(fuzz_safetensors safetensors)
gk_add_fuzzer(fuzz_plan_preset plan_preset)
gk_add_fuzzer(fuzz_model model MAX_LEN 32768 RUNS 2000)
gk_add_fuzzer(fuzz_shard shard MAX_LEN 16384 RUNS 2000)
gk_add_fuzzer(fuzz_tok_load tok_load MAX_LEN 16384 RUNS 3000)
gk_add_fuzzer(fuzz_tok_encode tok_encode RUNS 20000)

# Fuzz targets, built when GK_FUZZ is ON (clang only). Each target is a libFuzzer
# executable tests/fuzz/<name>.c linked with grokcore, and a ctest test that runs
# it for a bounded number of inputs, starting from the committed seed corpus in
# tests/fuzz/corpus/<corpus>/ (small valid files; new inputs that libFuzzer finds
# go to the build tree, never to the source tree). A parser adds its target with
# one gk_add_fuzzer() line at the end of this file.
if(NOT GK_FUZZ)
  return()
endif()
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "GK_FUZZ needs clang (configure with CC=clang)")
endif()

# Coverage instrumentation in the library, so that libFuzzer sees which branches
# of the parsers an input reaches. The instrumentation calls into a runtime that
# only ASan or libFuzzer provide, so every program linked with grokcore (the CLI,
# the unit tests) links that runtime too.
target_compile_options(grokcore PRIVATE -fsanitize=fuzzer-no-link)
target_link_options(grokcore INTERFACE -fsanitize=fuzzer-no-link)

function(gk_add_fuzzer name corpus)
  add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${name}.c)
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE grokcore)
  set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz/${name})
  file(MAKE_DIRECTORY ${work}/corpus)
  # A fixed seed and run count keep the test bounded and repeatable; crashes are
  # written to the build tree as crash-* files, to replay with `${name} FILE`.
  add_test(NAME ${name}
           COMMAND ${name} -seed=1 -runs=20000 -max_len=4096 -timeout=10 -rss_limit_mb=2048
                   -artifact_prefix=${work}/ ${work}/corpus
                   ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${corpus})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120)
endfunction()

gk_add_fuzzer(fuzz_gguf gguf)
gk_add_fuzzer(fuzz_safetensors safetensors)
gk_add_fuzzer(fuzz_plan_preset plan_preset)

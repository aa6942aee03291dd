# run_short.cmake - the bounded libFuzzer run of a ctest fuzz test (see
# tests/cmake/fuzz.cmake): empties the working corpus WORK/corpus, so that the
# run starts from the committed seeds SEEDS alone (new entries land in WORK/corpus,
# never in the source tree), then runs FUZZER with FLAGS and fails if it fails.
#   cmake -DFUZZER=... -DWORK=... -DSEEDS=... "-DFLAGS=a;b" -P run_short.cmake
file(REMOVE_RECURSE ${WORK}/corpus)
file(MAKE_DIRECTORY ${WORK}/corpus)
execute_process(COMMAND ${FUZZER} ${FLAGS} -artifact_prefix=${WORK}/ ${WORK}/corpus ${SEEDS}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${rc}); the input is in ${WORK}/ (crash-*, timeout-*, oom-*)")
endif()

# Tensor-parallel inference under mpirun (tests/dist/dist_test.py): logits of a
# model split over 2, 4 and 8 processes against one process, greedy generations,
# the wire formats, grok shard's per-rank files, and the failure paths. Each
# case skips (77) without mpirun or without an MPI build.
set(GK_DIST_DIR ${CMAKE_SOURCE_DIR}/tests/dist)
set(GK_DIST_ARGS)
set(GK_DIST_CASES parity-f32 parity-f16 parity-q8_0 parity-q4_0 n8 generate shard failures)
if(GK_SANITIZE)
  # Under the sanitizers: shorter prompts, N = 2 only, and fewer cases.
  list(APPEND GK_DIST_ARGS --quick)
  set(GK_DIST_CASES parity-f32 parity-q4_0 shard failures)
endif()
foreach(c ${GK_DIST_CASES})
  add_test(NAME dist_${c}
           COMMAND ${GK_PYTHON} ${GK_DIST_DIR}/dist_test.py --grok $<TARGET_FILE:grok>
                   --case ${c} ${GK_DIST_ARGS})
  set_tests_properties(dist_${c} PROPERTIES
    ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=1"
    SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS dist RUN_SERIAL TRUE)
endforeach()

# The follower protocol with the batch API and the KV bookkeeping calls.
add_executable(dist_batch ${GK_DIST_DIR}/dist_batch.c)
target_link_libraries(dist_batch PRIVATE grokcore)
add_test(NAME dist_batch
         COMMAND ${GK_PYTHON} ${GK_DIST_DIR}/dist_test.py --grok $<TARGET_FILE:grok>
                 --case batch --tool $<TARGET_FILE:dist_batch>)
set_tests_properties(dist_batch PROPERTIES
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1"
  SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS dist RUN_SERIAL TRUE)

# grok serve with the model split over two ranks: rank 0 on HTTP, the same greedy
# texts as one process, and every rank gone soon after SIGTERM.
add_test(NAME dist_serve
         COMMAND ${GK_PYTHON} ${GK_DIST_DIR}/serve_mpi.py --grok $<TARGET_FILE:grok>
                 --model ${CMAKE_SOURCE_DIR}/models/default.gguf)
set_tests_properties(dist_serve PROPERTIES
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=1"
  SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS dist RUN_SERIAL TRUE)

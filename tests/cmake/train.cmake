# Training tests (src/train): gradient parity with torch autograd on the
# reference (tests/reference/grok_ref.py) for both variants and numerics modes.
set(GK_TRAIN_DIR ${CMAKE_SOURCE_DIR}/tests/train)

add_executable(train_grad ${GK_TRAIN_DIR}/train_grad.c)
target_link_libraries(train_grad PRIVATE grokcore)

add_test(NAME train_grad_parity
         COMMAND ${GK_PYTHON} ${GK_TRAIN_DIR}/grad_parity.py --tool $<TARGET_FILE:train_grad>)
set_tests_properties(train_grad_parity PROPERTIES
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=2"
  SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS train)

# End-to-end `grok train` (train_e2e.py): learning below the unigram entropy,
# bit-exact resume, bad inputs and a full disk, MPI with 2 processes.
set(GK_TRAIN_E2E_ARGS)
if(GK_SANITIZE)
  list(APPEND GK_TRAIN_E2E_ARGS --quick)
endif()
foreach(c learn resume badinput mpi)
  add_test(NAME train_${c}
           COMMAND ${GK_PYTHON} ${GK_TRAIN_DIR}/train_e2e.py --grok $<TARGET_FILE:grok>
                   --case ${c} ${GK_TRAIN_E2E_ARGS})
  set_tests_properties(train_${c} PROPERTIES
    ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1"
    SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS train)
endforeach()

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

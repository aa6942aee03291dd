# k-quant / IQ4 block decoding: the engine's scalar to_float against the numpy
# decoder in tests/reference/kquants_ref.py (written from the format description).
add_test(NAME kquants_numpy
         COMMAND ${GK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/reference/kquants_check.py
                 $<TARGET_FILE:test_kquants>)
set_tests_properties(kquants_numpy PROPERTIES
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1" SKIP_RETURN_CODE 77 TIMEOUT 120)

# k-quant / IQ4 block decoding: the engine's scalar to_float against the numpy
# decoder in tests/reference/kquants_ref.py (written from the format description).
add_test(NAME kquants_numpy
         COMMAND ${GK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/reference/kquants_check.py
                 $<TARGET_FILE:test_kquants>)
set_tests_properties(kquants_numpy PROPERTIES
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1" SKIP_RETURN_CODE 77 TIMEOUT 120)

# llama.cpp's mixes written by `grok quantize` (k-quants with Q8_0 attn_k/attn_v and
# a Q6_K output), against the float64 reference on the exactly dequantized weights
# (parity.py's rules for quantized types); and files llama.cpp's quantizer wrote
# (tests/fixtures/llamacpp: IQ4_XS, Q2_K, Q4_K_M). --quick (48-token prompts, one KV-cache
# run) always: five wide models cost minutes of reference time otherwise.
# Under the sanitizers (an engine several times slower) only the small models: two
# mixes and the IQ4_XS file, which between them reach every k-quant kernel but Q4_K's
# and Q5_K's (run by test_kquants there).
set(GK_KQ_PARITY_ARGS --quick)
set(GK_KQ_CASES "*-q2_k-*,*-q3_k_m-*,*-q4_k_m-*,*-q5_k_m-*,*-q6_k-*,*-llama_*")
if(GK_SANITIZE)
  set(GK_KQ_CASES "*-q2_k-*,*-q6_k-*,*-llama_iq4_xs-*")
endif()
add_test(NAME parity_kquant
         COMMAND ${GK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/reference/parity.py --grok $<TARGET_FILE:grok>
                 --case "${GK_KQ_CASES}" ${GK_KQ_PARITY_ARGS})
set_tests_properties(parity_kquant PROPERTIES
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=2"
  SKIP_RETURN_CODE 77 TIMEOUT 900 LABELS parity)

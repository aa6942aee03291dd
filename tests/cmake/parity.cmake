# Reference-parity tests: the C engine's logits against the independent PyTorch
# reference in tests/reference/ (see parity.py's docstring for cases and bounds).
# Split by area so they run in parallel and a failure names what broke.
# parity_selfcheck checks the reference and the GGUF writer/reader themselves and
# needs no engine; the others skip (77) when the grok binary is missing.
set(GK_PARITY_DIR ${CMAKE_SOURCE_DIR}/tests/reference)
set(GK_PARITY_ARGS)
if(GK_SANITIZE)
  # Shorter prompts and one KV-cache run per case under the sanitizers.
  list(APPEND GK_PARITY_ARGS --quick)
endif()

add_test(NAME parity_selfcheck COMMAND ${GK_PYTHON} ${GK_PARITY_DIR}/selfcheck.py)

set(GK_PARITY_GROUPS
  "grok1:grok1-f32-*,grok1old-f32-*"
  "grok2:grok2-f32-*,grok2yarn-f32-*"
  "half:*-f16-*,*-bf16-*"
  "quant:*-q8_0-*,*-q4_0-*"
  "kv:kv*")
foreach(group ${GK_PARITY_GROUPS})
  string(REPLACE ":" ";" parts "${group}")
  list(GET parts 0 name)
  list(GET parts 1 globs)
  add_test(NAME parity_${name}
           COMMAND ${GK_PYTHON} ${GK_PARITY_DIR}/parity.py --grok $<TARGET_FILE:grok>
                   --case "${globs}" ${GK_PARITY_ARGS})
endforeach()

foreach(t parity_selfcheck parity_grok1 parity_grok2 parity_half parity_quant parity_kv)
  set_tests_properties(${t} PROPERTIES
    ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=2"
    SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS parity)
endforeach()

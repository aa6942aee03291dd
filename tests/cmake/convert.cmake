# Checkpoint import tests beyond the unit tests (tests/unit/test_convert.c,
# test_safetensors.c, which cover layouts, byte equality and every failure case):
#   convert_parity   a small Grok-2 checkpoint in the release's layout, written by
#                    tests/convert/make_checkpoint.py, through `grok convert` to
#                    bf16 / q8_0 / q4_0 GGUF; the engine's logits against the
#                    PyTorch reference run on the unsharded weights (bounds of
#                    parity.py), plus CLI failure checks. Skips (77) without the
#                    grok binary.
# The >= 4 GiB peak-RSS measurement is manual (bench/convert_rss.sh), not a test.
add_test(NAME convert_parity
         COMMAND ${GK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/convert/convert_parity.py
                 --grok $<TARGET_FILE:grok>)
set_tests_properties(convert_parity PROPERTIES
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=2"
  SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS "parity;convert")

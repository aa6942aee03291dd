# File layouts people download (split GGUF, one tensor per expert) and `grok
# info` on files the engine cannot run, through the CLI; see file_layouts.py.
add_test(NAME file_layouts
         COMMAND ${GK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/reference/file_layouts.py
                 --grok $<TARGET_FILE:grok>)
set_tests_properties(file_layouts PROPERTIES
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1" SKIP_RETURN_CODE 77 TIMEOUT 300)

# IQ block decoders against an independent numpy dequantizer (and llama.cpp's
# gguf-py when it is there); see iq_ref.py.
add_test(NAME iquants_numpy
         COMMAND ${GK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/reference/iq_ref.py
                 --tool $<TARGET_FILE:test_iquants>)
set_tests_properties(iquants_numpy PROPERTIES
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1" SKIP_RETURN_CODE 77 TIMEOUT 300)

# File layouts people download (split GGUF, one tensor per expert) and `grok
# info` on files the engine cannot run, through the CLI; see file_layouts.py.
add_test(NAME file_layouts
         COMMAND ${GK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/reference/file_layouts.py
                 --grok $<TARGET_FILE:grok>)
set_tests_properties(file_layouts PROPERTIES
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1" SKIP_RETURN_CODE 77 TIMEOUT 300)

# grok serve, end to end (tests/serve/*.test.mjs, Node 20's node --test): the
# official openai client, raw HTTP, and the chat page in Debian's chromium via
# playwright-core. Each file starts its own server on a free port with the
# shipped model. They skip (77) without node or the npm peers that
# scripts/setup-deps.sh installs into tests/serve/node_modules; the browser test
# also skips without /usr/bin/chromium. They run one at a time (RUN_SERIAL):
# cancellation must free a slot within a second, which needs the CPU.
# Under ASan (GK_SANITIZE) the texts and the soak are shorter (SERVE_LIGHT) and
# the browser test is left out.
set(GK_SERVE_DIR ${CMAKE_SOURCE_DIR}/tests/serve)
set(GK_SERVE_MODEL ${CMAKE_SOURCE_DIR}/models/default.gguf)
set(GK_SERVE_TESTS api errors cancel soak template)
set(GK_SERVE_SOAK 500)
set(GK_SERVE_LIGHT 0)
if(GK_SANITIZE)
  set(GK_SERVE_SOAK 40)
  set(GK_SERVE_LIGHT 1)
else()
  list(APPEND GK_SERVE_TESTS browser)
endif()
foreach(t ${GK_SERVE_TESTS})
  add_test(NAME serve_${t} COMMAND ${GK_SERVE_DIR}/run.sh ${GK_SERVE_DIR}/${t}.test.mjs)
  set_tests_properties(serve_${t} PROPERTIES
    SKIP_RETURN_CODE 77 TIMEOUT 600 RUN_SERIAL TRUE LABELS serve
    ENVIRONMENT "GROK=$<TARGET_FILE:grok>;GROK_MODEL=${GK_SERVE_MODEL};SOAK_N=${GK_SERVE_SOAK};SERVE_LIGHT=${GK_SERVE_LIGHT}")
endforeach()

# /health and the rest while the model loads: hold_open.c, preloaded into the
# server, holds the open() of the model file until the test releases it. It is
# built without the sanitizers (their runtime lives in the instrumented grok).
add_library(gk_hold_open MODULE ${GK_SERVE_DIR}/hold_open.c)
target_link_libraries(gk_hold_open PRIVATE ${CMAKE_DL_LIBS})
if(GK_SANITIZE)
  target_compile_options(gk_hold_open PRIVATE -fno-sanitize=all)
  target_link_options(gk_hold_open PRIVATE -fno-sanitize=all)
endif()
add_test(NAME serve_loading COMMAND ${GK_SERVE_DIR}/run.sh ${GK_SERVE_DIR}/loading.test.mjs)
set_tests_properties(serve_loading PROPERTIES
  SKIP_RETURN_CODE 77 TIMEOUT 120 RUN_SERIAL TRUE LABELS serve
  ENVIRONMENT "GROK=$<TARGET_FILE:grok>;GROK_MODEL=${GK_SERVE_MODEL};HOLD_OPEN_LIB=$<TARGET_FILE:gk_hold_open>")

# The request parser under libFuzzer (tests/cmake/fuzz.cmake defines gk_add_fuzzer).
if(GK_FUZZ)
  gk_add_fuzzer(fuzz_serve_request serve_request)
endif()

# make install PREFIX=...: the installed tree links a program through grok.pc
# (tests/cli/test_install.sh). Not under the sanitizers: the installed library
# would need their runtime.
if(NOT GK_SANITIZE)
  add_test(NAME install_prefix COMMAND ${CMAKE_SOURCE_DIR}/tests/cli/test_install.sh
                                       ${CMAKE_BINARY_DIR})
  set_tests_properties(install_prefix PROPERTIES TIMEOUT 120 DEPENDS cli_e2e)
endif()

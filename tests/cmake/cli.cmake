# End-to-end tests of the grok command line (failure paths and outputs).
add_test(NAME cli_e2e COMMAND ${CMAKE_SOURCE_DIR}/tests/cli/test_cli.sh $<TARGET_FILE:grok>
                              ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_e2e PROPERTIES TIMEOUT 300 LABELS cli)

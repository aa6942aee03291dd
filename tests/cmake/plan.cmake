# End-to-end tests of `grok plan` (bad inputs, tables, JSON, SVG).
add_test(NAME cli_plan COMMAND ${CMAKE_SOURCE_DIR}/tests/cli/test_plan.sh $<TARGET_FILE:grok>
                               ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_plan PROPERTIES TIMEOUT 120 LABELS cli)

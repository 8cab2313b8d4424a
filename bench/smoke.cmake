# The ctest smoke test of kagzi-bench (label "bench"): runs it with --quick
# on bench3 with 50 runs against the test PostgreSQL, and checks only that
# it exited 0 (every run completed) and that its JSON report parses and says
# so. No timing is asserted: the benchmark is not a test.
# Inputs: BENCH (the binary), URL (the test server), WORK_DIR.
file(REMOVE_RECURSE "${WORK_DIR}")
set(json "${WORK_DIR}/report.json")
execute_process(
  COMMAND "${BENCH}" --quick --workload bench3 -W 50 --url "${URL}" --work-dir "${WORK_DIR}"
          --json "${json}"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "kagzi-bench exited with ${rc}; its kagzid logs are in ${WORK_DIR}")
endif()
file(READ "${json}" report)
string(JSON completed ERROR_VARIABLE error GET "${report}" workloads 0 completed)
if(error)
  message(FATAL_ERROR "the JSON report ${json} does not parse or lacks workloads[0].completed: ${error}")
endif()
if(NOT completed EQUAL 50)
  message(FATAL_ERROR "the JSON report ${json} says ${completed} of 50 runs completed")
endif()
# The memory figures were read from the running kagzid processes.
string(JSON pss ERROR_VARIABLE error GET "${report}" workloads 0 kagzid_pss_kib)
if(error OR NOT pss GREATER 0)
  message(FATAL_ERROR "the JSON report ${json} has no kagzid PSS (${pss}): ${error}")
endif()
message(STATUS "kagzi-bench smoke: 50 of 50 runs completed; ${json} parses; kagzid PSS ${pss} KiB")

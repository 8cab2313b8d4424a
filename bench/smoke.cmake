# The ctest smoke test of kagzi-bench (label "bench"): runs it with --quick
# on bench3 with 50 runs and on idle-latency with 3 against the test
# PostgreSQL, and checks only that it exited 0 (every run completed) and
# that its JSON reports parse and say so, with the figures each workload
# reports. No timing is asserted: the benchmark is not a test.
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
# The write commits were counted from the WAL (held through the window, so
# that the checkpoints of the tests running beside it cannot recycle it).
string(JSON commits ERROR_VARIABLE error GET "${report}" workloads 0 write_commits_per_workflow)
if(error OR NOT commits GREATER 0)
  string(JSON notes ERROR_VARIABLE ignored GET "${report}" workloads 0 notes)
  message(FATAL_ERROR "the JSON report ${json} has no write commits per workflow (${commits}): "
                      "${error} ${notes}")
endif()
# The memory figures were read from the running kagzid processes.
string(JSON pss ERROR_VARIABLE error GET "${report}" workloads 0 kagzid_pss_kib)
if(error OR NOT pss GREATER 0)
  message(FATAL_ERROR "the JSON report ${json} has no kagzid PSS (${pss}): ${error}")
endif()

# idle-latency: where each run's time went. Per run, the claim's transaction
# began before the one recording step 1, that one no later than the one
# recording the last step, and that one before the run's end; so the same
# order holds for each percentile over the same runs. An order, not a time.
set(json2 "${WORK_DIR}/idle-latency.json")
execute_process(
  COMMAND "${BENCH}" --quick --workload idle-latency -W 3 --url "${URL}" --work-dir "${WORK_DIR}"
          --json "${json2}"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "kagzi-bench idle-latency exited with ${rc}; its kagzid logs are in ${WORK_DIR}")
endif()
file(READ "${json2}" report)
set(previous "")
foreach(phase claim_began_ms first_step_began_ms last_step_began_ms latency_ms)
  string(JSON count ERROR_VARIABLE error GET "${report}" workloads 0 ${phase} count)
  if(error OR NOT count EQUAL 3)
    message(FATAL_ERROR "${json2}: ${phase} should count 3 runs, has ${count}: ${error}")
  endif()
  string(JSON p50 GET "${report}" workloads 0 ${phase} p50)
  if(NOT previous STREQUAL "" AND p50 LESS previous)
    message(FATAL_ERROR "${json2}: ${phase} p50 ${p50} ms is before the phase ahead of it (${previous} ms)")
  endif()
  set(previous "${p50}")
endforeach()
message(STATUS "kagzi-bench smoke: 50 of 50 runs completed; ${json} parses; ${commits} write "
               "commits per workflow; kagzid PSS ${pss} KiB; "
               "idle-latency phases in order in ${json2}")

# The ctest smoke test of kagzi-bench (label "bench"): runs it with --quick
# on bench3 with 50 runs, on idle-latency with 3, on backlog with 50 and on
# ceiling (1 s, 4 clients) then bench3, twice over (--rounds 2), against
# the test PostgreSQL, and checks only that it exited 0 (every run
# completed) and that its JSON reports parse and say so, with the figures
# each workload reports. No timing is asserted: the benchmark is not a
# test.
# Inputs: BENCH (the binary), URL (the test server), WORK_DIR.
file(REMOVE_RECURSE "${WORK_DIR}")

# Runs one workload with --quick and -W `runs` (and any further arguments
# given); its JSON report, read, goes into `out_report`, and what it printed
# into `bench_output`.
function(run_bench workload runs json out_report)
  execute_process(
    COMMAND "${BENCH}" --quick --workload ${workload} -W ${runs} --url "${URL}"
            --work-dir "${WORK_DIR}" --json "${json}" ${ARGN}
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE output)
  message("${output}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "kagzi-bench ${workload} exited with ${rc}; its kagzid logs are in ${WORK_DIR}")
  endif()
  file(READ "${json}" report)
  set(${out_report} "${report}" PARENT_SCOPE)
  set(bench_output "${output}" PARENT_SCOPE)
endfunction()

# bench3 with worker_cpu_affinity on (kagzid's extra flags are named in the
# table's header, so a reader knows the configuration measured).
set(json "${WORK_DIR}/report.json")
run_bench(bench3 50 "${json}" report --kagzid-arg=--worker-cpu-affinity=auto)
if(NOT bench_output MATCHES "--concurrency [0-9]+ --worker-cpu-affinity=auto\\)")
  message(FATAL_ERROR "the table's header does not name kagzid's extra flag:\n${bench_output}")
endif()
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
run_bench(idle-latency 3 "${json2}" report)
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
# The slowest run is the one at the latency's max, and its own phases are in
# the same order.
string(JSON slowest ERROR_VARIABLE error GET "${report}" workloads 0 slowest_run latency_ms)
string(JSON max GET "${report}" workloads 0 latency_ms max)
if(error OR NOT slowest EQUAL max)
  message(FATAL_ERROR "${json2}: slowest_run.latency_ms (${slowest}) is not latency_ms.max (${max}): ${error}")
endif()
set(previous "")
foreach(phase claim_began_ms first_step_began_ms last_step_began_ms latency_ms)
  string(JSON at ERROR_VARIABLE error GET "${report}" workloads 0 slowest_run ${phase})
  if(error OR at STREQUAL "null")
    message(FATAL_ERROR "${json2}: the slowest run has no ${phase}: ${error}")
  endif()
  if(NOT previous STREQUAL "" AND at LESS previous)
    message(FATAL_ERROR "${json2}: the slowest run's ${phase} ${at} ms is before the phase ahead of it (${previous} ms)")
  endif()
  set(previous "${at}")
endforeach()
# backlog: with a server given by URL (its log is not the bench's to
# read), the claim's plan is asked for after the window, beside the parked
# runs (--quick parks 20,000): it must read kagzi_runs through its indexes.
set(json3 "${WORK_DIR}/backlog.json")
run_bench(backlog 50 "${json3}" report)
string(JSON uses_index ERROR_VARIABLE error GET "${report}" workloads 0 backlog claim_uses_index)
if(error OR NOT uses_index)
  string(JSON problem ERROR_VARIABLE ignored GET "${report}" workloads 0 backlog claim_plan_problem)
  string(JSON plan ERROR_VARIABLE ignored GET "${report}" workloads 0 backlog claim_plan)
  message(FATAL_ERROR "${json3}: the claim plan does not read kagzi_runs by index only "
                      "(${uses_index} ${error}): ${problem}\n${plan}")
endif()
# ceiling, then bench3, in two rounds: the ceiling counted committed
# INSERTs, bench3's steps/s is reported against it (a ratio, whatever its
# value), and the two rounds are summarized.
set(json4 "${WORK_DIR}/ceiling.json")
run_bench("ceiling,bench3" 50 "${json4}" report --ceiling-seconds 1 --ceiling-clients 4
          --rounds 2)
string(JSON name ERROR_VARIABLE error GET "${report}" workloads 0 name)
string(JSON transactions ERROR_VARIABLE error2 GET "${report}" workloads 0 ceiling transactions)
if(error OR error2 OR NOT name STREQUAL "ceiling" OR NOT transactions GREATER 0)
  message(FATAL_ERROR "${json4}: workloads[0] is not a ceiling that committed INSERTs "
                      "(${name}, ${transactions}): ${error} ${error2}")
endif()
string(JSON clients GET "${report}" workloads 0 ceiling clients)
if(NOT clients EQUAL 4)
  message(FATAL_ERROR "${json4}: the ceiling used ${clients} clients, not the 4 asked for")
endif()
string(JSON of_ceiling ERROR_VARIABLE error GET "${report}" workloads 1 steps_of_ceiling)
if(error OR NOT of_ceiling GREATER 0)
  message(FATAL_ERROR "${json4}: bench3 has no steps_of_ceiling (${of_ceiling}): ${error}")
endif()
if(NOT bench_output MATCHES "steps/s: [0-9]+% of the ceiling measured in this run")
  message(FATAL_ERROR "bench3's details do not relate its steps/s to the ceiling:\n${bench_output}")
endif()
string(JSON round ERROR_VARIABLE error GET "${report}" workloads 3 round)
string(JSON name GET "${report}" workloads 3 name)
if(error OR NOT round EQUAL 2 OR NOT name STREQUAL "bench3")
  message(FATAL_ERROR "${json4}: workloads[3] is not round 2's bench3 (${name}, ${round}): ${error}")
endif()
set(summarized FALSE)
string(JSON figures LENGTH "${report}" across_rounds)
if(figures GREATER 0)
  math(EXPR last "${figures} - 1")
  foreach(i RANGE ${last})
    string(JSON workload GET "${report}" across_rounds ${i} workload)
    string(JSON figure GET "${report}" across_rounds ${i} figure)
    string(JSON count GET "${report}" across_rounds ${i} count)
    string(JSON met GET "${report}" across_rounds ${i} met)
    string(JSON target GET "${report}" across_rounds ${i} target)
    if(workload STREQUAL "bench3" AND figure STREQUAL "steps_of_ceiling" AND count EQUAL 2
       AND target STREQUAL "> 1" AND met GREATER_EQUAL 0 AND met LESS_EQUAL 2)
      set(summarized TRUE)
    endif()
  endforeach()
endif()
if(NOT summarized OR NOT bench_output MATCHES "across 2 rounds:")
  message(FATAL_ERROR "${json4}: the two rounds' steps/s over the ceiling are not summarized:\n"
                      "${bench_output}")
endif()
# A ceiling without clients is refused before anything runs, naming the flag.
execute_process(
  COMMAND "${BENCH}" --quick --workload ceiling --ceiling-clients 0 --url "${URL}"
          --work-dir "${WORK_DIR}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE output
  ERROR_VARIABLE output)
if(rc EQUAL 0 OR NOT output MATCHES "--ceiling-clients")
  message(FATAL_ERROR "--ceiling-clients 0 was not refused by name (exit ${rc}):\n${output}")
endif()
# So are no rounds.
execute_process(
  COMMAND "${BENCH}" --quick --workload bench3 --rounds 0 --url "${URL}" --work-dir "${WORK_DIR}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE output
  ERROR_VARIABLE output)
if(rc EQUAL 0 OR NOT output MATCHES "--rounds")
  message(FATAL_ERROR "--rounds 0 was not refused by name (exit ${rc}):\n${output}")
endif()
message(STATUS "kagzi-bench smoke: 50 of 50 runs completed; ${json} parses; ${commits} write "
               "commits per workflow; kagzid PSS ${pss} KiB; "
               "idle-latency phases, and the slowest run's, in order in ${json2}; the claim plan of ${json3} by index; "
               "${transactions} ceiling INSERTs and bench3 against them, in two rounds "
               "summarized, in ${json4}")

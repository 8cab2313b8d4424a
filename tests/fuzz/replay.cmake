# The corpus replay tests: every fuzz target built with the project's own
# compiler (no libFuzzer) through replay_main.cc, run over its stored corpus
# tests/fuzz/corpus/<target>/ (seeds and the reproducers of every bug the
# fuzzers found). Included from tests/unit/CMakeLists.txt; `ctest -L unit`
# and `make test` run them as fuzz_corpus.<target>.
include("${CMAKE_CURRENT_LIST_DIR}/targets.cmake")
foreach(name IN LISTS KAGZI_FUZZ_TARGETS)
  kagzi_add_fuzz_target(${name} replay)
  add_test(NAME fuzz_corpus.${name}
           COMMAND fuzz_replay_${name} "${KAGZI_FUZZ_DIR}/corpus/${name}")
  set_tests_properties(fuzz_corpus.${name} PROPERTIES LABELS unit TIMEOUT 300)
endforeach()

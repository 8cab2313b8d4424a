# A thin front door over the CMake presets (CMakePresets.json) and scripts/.
#
#   make demo       build, start a private PostgreSQL and kagzid, run `hello`
#   make test       build, then every test (ctest --preset dev)
#   make build      install missing Debian packages, configure and build (dev)
#   make demo-stop  stop what `KEEP=1 make demo` left running
#   make format     clang-format -i every C/C++ source
#   make lint       clang-tidy over the dev build's compile_commands.json
#   make clean      stop private servers, delete build/ and .kagzi/
#   make package    deb and rpm packages (release preset) in build/release/packages
#   make e2e-systemd  build the packages and test them in a booted Debian with
#                   systemd (root; scripts/e2e-systemd.sh)
#   make test-asan  every test under AddressSanitizer + UBSan (build/asan)
#   make test-tsan  every test under ThreadSanitizer (build/tsan)
#   make chaos      the long chaos test: 5,000 runs, kills, PostgreSQL restarts
#                   (scripts/chaos.sh; CHAOS_ARGS="--runs N ..."; docs/chaos.md)
#   make fuzz       the libFuzzer targets, 60 s each (FUZZ_SECONDS, FUZZ_TARGET;
#                   clang, build/fuzz; scripts/fuzz.sh; docs/fuzzing.md)
#   make bench      kagzi-bench, every workload, on a private PostgreSQL (dev
#                   preset build; BENCH_ARGS="--quick ..."; docs/benchmarks.md)

SHELL := /bin/bash
.DEFAULT_GOAL := build
.PHONY: build test test-asan test-tsan demo demo-stop format lint clean package e2e-systemd

SOURCE_DIRS := plugin-api core daemon ctl plugins tests bench
empty :=
space := $(empty) $(empty)
# C/C++ sources under SOURCE_DIRS, NUL-separated for xargs -0.
FIND_SOURCES = find $(wildcard $(SOURCE_DIRS)) -type f \
  \( -name '*.c' -o -name '*.h' -o -name '*.cc' -o -name '*.cpp' -o -name '*.hpp' \) -print0

build:
	scripts/bootstrap.sh
	cmake --preset dev
	cmake --build --preset dev

# make exits non-zero whenever ctest does; ctest's own code is printed.
test: build
	@rc=0; ctest --preset dev || rc=$$?; \
	  if [ $$rc -ne 0 ]; then echo "make test: ctest exited with $$rc" >&2; fi; exit $$rc

# The whole suite, sanitized: configure, build and ctest with the asan or
# tsan preset (CMakePresets.json). Any sanitizer report fails it, including
# one from a kagzid worker that its supervisor restarted: the test
# sanitizer.reports reads <build>/sanitizer-logs (tests/sanitizer).
test-asan test-tsan: test-%:
	scripts/bootstrap.sh
	cmake --preset $*
	cmake --build --preset $*
	@rc=0; ctest --preset $* || rc=$$?; \
	  if [ $$rc -ne 0 ]; then echo "make test-$*: ctest exited with $$rc" >&2; fi; exit $$rc

demo:
	scripts/demo.sh

demo-stop:
	scripts/demo.sh stop

format:
	$(FIND_SOURCES) | xargs -0 -r clang-format -i

# Optional: skipped when clang-tidy is not installed. C++ sources only (the C
# files follow the kagzi_ snake_case of the C ABI, not the C++ naming rules).
lint: build
	@if ! command -v run-clang-tidy >/dev/null; then \
	  echo "make lint: clang-tidy is not installed (apt-get install clang-tidy); skipping"; exit 0; fi; \
	run-clang-tidy -quiet -p build/dev \
	  '$(CURDIR)/($(subst $(space),|,$(SOURCE_DIRS)))/.*\.(cc|cpp)$$'

clean:
	-scripts/demo.sh stop
	-@for d in .kagzi/pg build/dev/test-pg build/asan/test-pg build/tsan/test-pg; do \
	  if [ -d "$$d" ]; then KAGZI_PG_DIR="$(CURDIR)/$$d" scripts/pg.sh stop; fi; done
	rm -rf build .kagzi

# Packages: Release build, CMAKE_INSTALL_PREFIX=/usr, no tests (see packaging/cpack.cmake).
package:
	scripts/bootstrap.sh
	cmake --preset release -DKAGZI_BUILD_TESTS=OFF
	cmake --build --preset release
	cd build/release && cpack -G "DEB;RPM"
	@ls -l build/release/packages/*.deb build/release/packages/*.rpm

e2e-systemd:
	scripts/bootstrap.sh
	scripts/e2e-systemd.sh

.PHONY: chaos
chaos: build
	scripts/chaos.sh --build-dir build/dev $(CHAOS_ARGS)

# Fuzzing (clang + libFuzzer, ASan + UBSan; docs/fuzzing.md): every target
# for FUZZ_SECONDS (default 60) each, or one with FUZZ_TARGET=<name>.
.PHONY: fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGET ?= all
fuzz:
	scripts/bootstrap.sh
	scripts/fuzz.sh $(FUZZ_TARGET) $(FUZZ_SECONDS)

# kagzi-bench (docs/benchmarks.md): builds it, with the kagzid and bench.so
# it runs, in the dev preset (RelWithDebInfo: -O2, NDEBUG), then runs every
# workload; about 4 minutes. BENCH_ARGS="--quick" is a one-minute smoke run;
# BENCH_ARGS="--workload bench3 -W 20000" one workload, bigger.
.PHONY: bench
BENCH_ARGS ?=
bench:
	scripts/bootstrap.sh
	cmake --preset dev
	cmake --build --preset dev --target kagzi_bench
	build/dev/bench/kagzi-bench $(BENCH_ARGS)

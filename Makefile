# Makefile — a thin wrapper over CMake for the everyday commands.
#
#   make                      build the library, the redkit tool and the examples in build/
#                             (no tests, no benches: needs neither cmocka nor redis-server)
#   make test                 install missing packages, build everything, run all tests
#   make test SANITIZE=1      the same with clang + ASan/UBSan, in build-asan/
#   make test WERROR=1        warnings are errors (CI does this)
#   make tsan                 clang + ThreadSanitizer, in build-tsan/: the tests of threads sharing
#                             one client and one near cache (TSAN_TESTS)
#   make bench                run every bench/ program (private redis unless REDIS_URL is set)
#   make fuzz                 build the libFuzzer targets (clang + sanitizers, in build-fuzz/) and
#                             run each for FUZZ_SECONDS (30), or FUZZ_RUNS inputs if given;
#                             FUZZERS="url_fuzz" picks some (docs/fuzzing.md)
#   make run                  run the example service examples/api-server on 127.0.0.1:8080
#                             ($REDIS_URL, or a private redis; Ctrl-C stops it)
#   make loadtest             wrk against the example service: cache on vs off, Redis killed
#   make install PREFIX=/usr/local
#   make clean
#   make CMAKE_OPTIONS="-DBUILD_TESTING=ON"   any extra CMake options (docs/install.md)
SANITIZE ?=
WERROR   ?= OFF
PREFIX   ?= /usr/local
JOBS     ?= 2

on = $(if $(filter 1 ON On on YES yes TRUE true,$(1)),ON,OFF)

ifeq ($(call on,$(SANITIZE)),ON)
BUILD    ?= build-asan
CMAKE_CC := CC=clang
else
BUILD    ?= build
CMAKE_CC :=
endif

# Plain `make` (and install, run) builds no tests and no benches, so it
# needs neither cmocka nor the test fixture; `make test` and `make bench`
# turn them on in the same build folder (target-specific values reach
# their prerequisites). CMAKE_OPTIONS comes last and wins.
CMAKE_OPTIONS ?=
PARTS        = -DBUILD_TESTING=OFF -DRK_BUILD_BENCH=OFF
test bench: PARTS = -DBUILD_TESTING=ON -DRK_BUILD_BENCH=ON

CMAKE_FLAGS = -DRK_WERROR=$(call on,$(WERROR)) -DRK_SANITIZE=$(call on,$(SANITIZE)) \
              -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(PARTS) $(CMAKE_OPTIONS)

.PHONY: all build configure test deps bench run loadtest install clean fuzz tsan
.NOTPARALLEL:

all: build

deps:
	bash scripts/deps

configure:
	$(CMAKE_CC) cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

# CMake's own make must not see ours (it would print every directory change).
build: configure
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build $(BUILD) -j$(JOBS)

# deps must finish before configure, so test and run list it first and
# build after it (make runs prerequisites left to right without -j).
test: deps build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

# ThreadSanitizer: only the tests whose subject is threads sharing one
# client, its connections and a near cache (the whole suite under TSan
# takes too long for CI). Fork checks skip themselves there: TSan does not
# support fork() while threads run.
TSAN_BUILD ?= build-tsan
TSAN_TESTS ?= near_test near_cache_test mux_test pipeline_test pubsub_test async_test
space := $(subst ,, )
tsan: deps
	CC=clang cmake -S . -B $(TSAN_BUILD) -DRK_TSAN=ON -DRK_WERROR=$(call on,$(WERROR)) \
	  -DBUILD_TESTING=ON -DRK_BUILD_BENCH=OFF $(CMAKE_OPTIONS)
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build $(TSAN_BUILD) -j$(JOBS) --target $(TSAN_TESTS)
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  ctest --test-dir $(TSAN_BUILD) --output-on-failure -j$(JOBS) -R '^($(subst $(space),|,$(TSAN_TESTS)))$$'

bench: build
	@set -e; for b in $(BUILD)/bench/*; do \
	  [ -x "$$b" ] || continue; \
	  echo "== $$b"; \
	  if [ -n "$$REDIS_URL" ]; then "$$b"; else bash scripts/with-redis "$$b"; fi; \
	done

# The fuzzers get their own build directory: coverage instrumentation
# slows everything else down, and only they need it. Each fuzzes a copy of
# its seeds in build-fuzz/fuzz/runs/<name>/ (crash inputs land there too),
# never tests/fuzz/corpus/ itself.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 30
FUZZ_RUNS    ?=
FUZZERS      ?= $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/*_fuzz.c))
FUZZ_LIMIT    = $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS))

fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DRK_SANITIZE=ON -DRK_WERROR=$(call on,$(WERROR)) \
	  -DBUILD_TESTING=OFF -DRK_BUILD_EXAMPLES=OFF -DRK_BUILD_TOOLS=OFF -DRK_BUILD_BENCH=OFF
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build $(FUZZ_BUILD) -j$(JOBS) --target $(FUZZERS)
	@status=0; for f in $(FUZZERS); do \
	  echo "== $$f ($(FUZZ_LIMIT))"; \
	  bash tests/fuzz/run-fuzzer $(FUZZ_BUILD)/fuzz/$$f tests/fuzz $(FUZZ_BUILD)/fuzz/runs/$$f \
	    $(FUZZ_LIMIT) || status=1; \
	done; exit $$status

run: deps build
	@bash examples/api-server/run $(BUILD)

loadtest: deps build
	@bash examples/api-server/loadtest $(BUILD)/api-server

install: build
	cmake --install $(BUILD)
	@if [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

clean:
	rm -rf build build-asan

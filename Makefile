# meerkat — top-level wrapper around CMake. `make run` and `make test` are the two commands
# a newcomer types; both install missing Debian packages first (`make deps`).

BUILD      ?= build
BUILD_SAN  ?= build-san
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 30

DEBIAN_PACKAGES = build-essential cmake pkg-config clang libbson-dev libmongoc-dev liblmdb-dev \
                  libpcre2-dev libcmocka-dev libsqlite3-dev libclang-rt-14-dev

.PHONY: all deps build test test-fast test-san run bench fuzz format format-check clean

all: build

deps:
	@sh scripts/deps.sh $(DEBIAN_PACKAGES)

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-san: deps
	cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DMK_SANITIZE=ON -DMK_BENCH=OFF
	cmake --build $(BUILD_SAN) -j $(JOBS)
	cd $(BUILD_SAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)

# Every test, then the same tests under ASan + UBSan.
test: test-fast test-san

run: build
	$(BUILD)/quickstart data
	$(BUILD)/users data/app

# The engine against raw LMDB and SQLite, then the ODM against Mongoose 8 on Node (when node
# is installed: its npm packages are fetched into bench/mongoose on first use).
bench: build
	$(BUILD)/bench_engine $(BENCH_ARGS)
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
	  [ -d bench/mongoose/node_modules/mongoose ] || (cd bench/mongoose && npm install --no-audit --no-fund --silent); \
	fi
	MK_SOURCE_DIR=$(CURDIR) $(BUILD)/bench_odm $(BENCH_ARGS)

fuzz: deps
	CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DMK_FUZZ=ON -DMK_BENCH=OFF -DMK_SANITIZE=ON
	cmake --build $(BUILD_FUZZ) -j $(JOBS)
	@set -e; for f in $(BUILD_FUZZ)/fuzz_*; do \
	  name=$$(basename $$f); mkdir -p $(BUILD_FUZZ)/corpus/$$name; \
	  echo "== $$name ($(FUZZ_SECONDS)s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $(BUILD_FUZZ)/corpus/$$name fuzz/corpus/$$name 2>&1 | tail -3; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ)

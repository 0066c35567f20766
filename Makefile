# Thin wrapper around meson and ninja; see README.md.
BUILD_DIR ?= build
MESON ?= meson

.PHONY: all build deps run test unit integration clean bench fuzz sanitize

all: build

$(BUILD_DIR)/build.ninja:
	$(MESON) setup $(BUILD_DIR)

build: $(BUILD_DIR)/build.ninja
	ninja -C $(BUILD_DIR)

deps:
	scripts/install-deps all

run: deps build
	scripts/run-demo

test: build
	scripts/run-tests

unit: build
	$(BUILD_DIR)/tests/unit_tests

integration: build
	$(BUILD_DIR)/tests/integration_tests

# The tests again, built with AddressSanitizer and UndefinedBehaviorSanitizer.
sanitize:
	test -f build-sanitize/build.ninja || $(MESON) setup build-sanitize -Db_sanitize=address,undefined -Db_lundef=false -Db_lto=false
	ninja -C build-sanitize
	BUILD_DIR=build-sanitize scripts/run-tests

# The request fuzzer for FUZZ_SECONDS (default 60), from the seed corpus.
FUZZ_SECONDS ?= 60
fuzz:
	test -f build-fuzz/build.ninja || CC=clang CXX=clang++ $(MESON) setup build-fuzz -Dfuzzing=true \
		-Db_sanitize=address,undefined -Db_lundef=false -Db_lto=false
	ninja -C build-fuzz tests/request_fuzzer
	mkdir -p build-fuzz/corpus
	build-fuzz/tests/request_fuzzer -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build-fuzz/corpus tests/fuzz/corpus

clean:
	rm -rf $(BUILD_DIR) build-sanitize build-fuzz

# make bench MODE=limiter runs one of the other modes (scripts/bench list).
bench: build
	scripts/bench $(MODE)

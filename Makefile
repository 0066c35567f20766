# Thin wrapper around meson and ninja; see README.md.
BUILD_DIR ?= build
MESON ?= meson

.PHONY: all build deps run test unit integration clean bench

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

clean:
	rm -rf $(BUILD_DIR)

# Thin front for CMake. `make run` and `make test` install what they need.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps build run test bench clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/parley serve --listen 127.0.0.1:8080 --data ./var

test: deps
	@./tests/run.sh

bench: deps
	@BUILD=$(BUILD) ./scripts/bench.sh

clean:
	rm -rf build build-*

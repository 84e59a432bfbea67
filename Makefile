# Thin front for CMake. `make run` and `make test` install what they need.
BUILD ?= build
JOBS ?= $(shell nproc)

# cmake --build runs make inside this make: without this every target
# prints make's "Entering directory" lines
MAKEFLAGS += --no-print-directory

.PHONY: all deps build web run test bench cluster clean

all: build

deps:
	@./scripts/install-deps.sh

# The build's own output goes to $(BUILD)/build.log and is shown only when
# the build fails. PARLEY_BENCH_PEERS=OFF: the bench peer drivers are built
# by `make bench` alone (it turns them on in the same build directory).
build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARLEY_BENCH_PEERS=OFF >/dev/null
	@echo "building in $(BUILD)/ (log: $(BUILD)/build.log)"
	@cmake --build $(BUILD) -j $(JOBS) >$(BUILD)/build.log 2>&1 || { cat $(BUILD)/build.log; exit 1; }

# The browser client (web/): Node.js, npm and chromium from
# scripts/install-web-deps.sh, then web/dist from scripts/build-web.sh.
web:
	@./scripts/install-web-deps.sh
	@./scripts/build-web.sh

run: build web
	@echo "parley serve --listen 127.0.0.1:8080 --data ./var   (Ctrl-C stops it)"
	@$(BUILD)/parley serve --listen 127.0.0.1:8080 --data ./var

# Three nodes on the real engines (Kafka, a Redis Cluster, Cassandra) in
# $(BUILD)/cluster: scripts/cluster.sh prints one ws:// URL per node.
cluster: build
	@PARLEY_BIN=$(BUILD)/parley ./scripts/cluster.sh up --nodes $${NODES:-3} --dir $(BUILD)/cluster
	@echo "stop it: scripts/cluster.sh down --dir $(BUILD)/cluster   (state: scripts/cluster.sh status --dir $(BUILD)/cluster)" >&2

test: deps
	@./tests/run.sh

bench: deps
	@BUILD=$(BUILD) ./scripts/bench.sh

clean:
	rm -rf build build-* web/dist web/dist-test web/src/gen

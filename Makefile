# zguide-rs: build, run the guided tour, test, lint, benchmark.
# `make run` and `make test` are all the set-up a fresh machine needs once
# libzmq is installed (`make deps` installs it on Debian/Ubuntu).

CARGO ?= cargo
# Most tests wait on sleeps and network round trips, not on the CPU, so they
# run well above one per core. Override with `make test TEST_THREADS=2`.
TEST_THREADS ?= 6

.PHONY: all deps build run test lint fmt bench clean

all: build

deps:
	@pkg-config --exists libzmq 2>/dev/null || { \
	  echo "installing libzmq (Debian package libzmq3-dev)"; \
	  apt-get update -qq && apt-get install -y -qq libzmq3-dev pkg-config iproute2 util-linux; }

build: deps
	$(CARGO) build --release --all-targets

run: build
	$(CARGO) run --release --bin zguide -- run

# Unit tests of the library, then the integration tests in tests/, which start
# the real programs (built in the same profile) in private network namespaces.
test: deps
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --release --lib --test '*' --test-threads $(TEST_THREADS) --no-fail-fast; \
	else \
	  $(CARGO) test --release --lib --test '*' -- --test-threads $(TEST_THREADS); \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: build
	$(CARGO) run --release --bin bench -- $(BENCH_ARGS)

clean:
	$(CARGO) clean

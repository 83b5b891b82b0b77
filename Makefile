# zguide-rs: build, run the guided tour, test, lint, benchmark.
# `make run` and `make test` are all the set-up a fresh machine needs: we link
# the system libzmq (see .cargo/config.toml), and the tests use unshare/nsenter
# (util-linux) and ip (iproute2). `make deps` installs what is missing on
# Debian/Ubuntu.

CARGO ?= cargo
# Most tests wait on sleeps and network round trips, not on the CPU, so they
# run well above one per core. Override with `make test TEST_THREADS=2`.
TEST_THREADS ?= 6

.PHONY: all deps build run test lint fmt bench clean mutants compare-html-check majortomo-venv

all: build

deps:
	@missing=""; \
	pkg-config --exists libzmq 2>/dev/null || missing="$$missing libzmq3-dev pkg-config"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v nsenter >/dev/null || missing="$$missing util-linux"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(CARGO) build --release

run: build
	$(CARGO) run --release --bin zguide -- run

# Unit tests of the library (and of the bench binary), then the integration tests in tests/, which start
# the real programs (built in the same profile) in private network namespaces.
test: deps majortomo-venv
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --release --lib --bin bench --bin zguide --test '*' --test-threads $(TEST_THREADS) --no-fail-fast; \
	else \
	  $(CARGO) test --release --lib --bin bench --bin zguide --test '*' -- --test-threads $(TEST_THREADS); \
	fi

# The Python virtual environment of the majortomo interoperability tests (tests/study_broker_majortomo.rs):
# target/majortomo-venv with the pinned tests/majortomo/requirements.txt. Does nothing when it is already there
# with the same requirements; installs python3 and python3-venv with apt-get when missing, as `deps` does.
# Those tests fail without it unless ZGUIDE_SKIP_MAJORTOMO=1.
MAJORTOMO_VENV = target/majortomo-venv
majortomo-venv:
	@if cmp -s tests/majortomo/requirements.txt $(MAJORTOMO_VENV)/requirements.txt && \
	   $(MAJORTOMO_VENV)/bin/python -c 'import majortomo, pyre' 2>/dev/null; then \
	  echo "majortomo-venv: $(MAJORTOMO_VENV) is up to date"; exit 0; \
	fi; \
	rm -rf $(MAJORTOMO_VENV); \
	if ! python3 -m venv $(MAJORTOMO_VENV) >/dev/null 2>&1; then \
	  echo "installing: python3 python3-venv"; rm -rf $(MAJORTOMO_VENV); \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv && \
	  python3 -m venv $(MAJORTOMO_VENV) || exit 1; \
	fi; \
	$(MAJORTOMO_VENV)/bin/python -m pip install --disable-pip-version-check -q -r tests/majortomo/requirements.txt && \
	cp tests/majortomo/requirements.txt $(MAJORTOMO_VENV)/requirements.txt && \
	echo "majortomo-venv: $(MAJORTOMO_VENV) ready"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: build
	$(CARGO) run --release --bin bench -- $(BENCH_ARGS)

clean:
	$(CARGO) clean

# Renders a `zguide compare` HTML report (ours against links to our own binaries) in headless Chromium, when
# /usr/bin/chromium exists (Debian: `apt-get install chromium`), and checks the summary table is in the DOM.
# The report is self-contained (inline CSS, no assets), so nothing is fetched.
compare-html-check: build
	@if [ ! -x /usr/bin/chromium ]; then echo "compare-html-check: no /usr/bin/chromium, skipped"; exit 0; fi; \
	tmp=$$(mktemp -d); profile=$$(mktemp -d); \
	trap 'rm -rf "$$tmp" "$$profile"' EXIT; \
	mkdir "$$tmp/ref" && ln -s "$(CURDIR)/target/release/identity" "$$tmp/ref/identity"; \
	target/release/zguide compare identity --reference "$$tmp/ref" --html "$$tmp/report.html" >/dev/null || exit 1; \
	/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
	  --disable-component-update --disable-sync --no-first-run --user-data-dir="$$profile" \
	  --dump-dom "file://$$tmp/report.html" >"$$tmp/dom.html" 2>"$$tmp/chromium.log"; \
	if grep -q '<table id="summary">' "$$tmp/dom.html" && grep -q '<td class="same">same</td>' "$$tmp/dom.html"; then \
	  echo "compare-html-check: the report renders, with its summary table"; \
	else \
	  echo "compare-html-check: no summary table in the rendered report"; cat "$$tmp/chromium.log"; exit 1; \
	fi

# Mutation testing with cargo-mutants (`cargo install cargo-mutants`): every
# mutant of the library modules must be caught by the unit tests, and every
# mutant of the long-running programs by their chapter's integration tests.
# Slow (tens of minutes to hours on 2 cores), so not part of CI.
# `make mutants MUTANTS_ARGS='--file src/message.rs'` narrows it down. `-C --lib` builds only the library's
# tests for each library mutant (about 15-20 s a mutant here instead of 2 minutes). Every library module runs
# with the unit tests; the reactor glue of `bstar` also through the Binary Star and Clone tests (its state
# handlers are clonesrv6's), and the six long-running brokers through their chapter's tests.
mutants:
	$(CARGO) mutants --no-shuffle --exclude 'src/bin/**' $(MUTANTS_ARGS) -C --lib --test-tool nextest
	$(CARGO) mutants --no-shuffle --file src/bstar.rs $(MUTANTS_ARGS) -C --test -C chapter4_binarystar -C --test -C chapter5_clone --test-tool nextest
	$(CARGO) mutants --no-shuffle --file src/bin/mdbroker.rs $(MUTANTS_ARGS) -C --test -C chapter4_majordomo --test-tool nextest
	$(CARGO) mutants --no-shuffle --file src/bin/titanic.rs $(MUTANTS_ARGS) -C --test -C chapter4_titanic --test-tool nextest
	$(CARGO) mutants --no-shuffle --file src/bin/ppqueue.rs --file src/bin/spqueue.rs $(MUTANTS_ARGS) -C --test -C chapter4_pirates --test-tool nextest
	$(CARGO) mutants --no-shuffle --file src/bin/lbbroker3.rs --file src/bin/peering3.rs $(MUTANTS_ARGS) -C --test -C chapter3 --test-tool nextest

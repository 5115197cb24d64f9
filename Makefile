# nifty: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
# One target/ for every build and test, so nothing compiles twice.
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: help build demo test lint fmt bench clean chain-tools

help: ## List the targets and what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build the nifty binary and every crate (debug)
	$(CARGO) build --workspace --locked

demo: build ## Build, start a devnet and the daemon over it with the dashboard up (ctrl-c stops)
	@"$(CARGO_TARGET_DIR)/debug/nifty" demo

test: ## Every test: unit, crash loop, CLI, devnet, end to end, daemon and API, dashboard in headless Chromium, chain source on a real anvil node (Chromium, anvil and solc-js installed if missing), 20 s fuzz per target (what CI runs)
	@CARGO=$(CARGO) scripts/test.sh

chain-tools: ## Install anvil and solc-js (npm) into .tools/chain for the chain-source tests
	@scripts/install-chain-tools.sh

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: fuzz
FUZZ_SECONDS ?= 300
fuzz: ## Fuzz URI analysis, metadata extraction, subgraph page decoding, config parsing and chain-log/ABI decoding, FUZZ_SECONDS (300) per target; test runs 20 s
	@CARGO=$(CARGO) scripts/fuzz.sh $(FUZZ_SECONDS)

.PHONY: soak
soak: ## The long reliability suite: crash loops of 100+ kills, fault matrix, disk full, SOAK_FUZZ_SECONDS (180) of fuzzing per target
	@CARGO=$(CARGO) scripts/soak.sh

bench: ## Release-mode benchmarks (~20 min): ingest, pinner, chain source on anvil, resume after kill -9, /api/status on 10M tokens; one table of medians + target/bench/results.json (NIFTY_BENCH_SMOKE=1: a quick check)
	@CARGO=$(CARGO) scripts/bench.sh

.PHONY: bench-peers
bench-peers: ## nifty beside subgrounds (PyPI) and graph-client (npm) paging one devnet (~10 min; installs them into .tools/peers): tokens/s, full and duplicate-free or not; one table + target/bench/peers.json
	@CARGO=$(CARGO) scripts/bench-peers.sh

clean: ## Remove build output
	$(CARGO) clean
	rm -rf fuzz/target

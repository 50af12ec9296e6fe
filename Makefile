# guardian: the two commands a new user needs, and a few more.
#
#   make demo   on a local anvil: a mempool-visible bridge drain, paused ahead of itself
#   make replay replay the real Nomad bridge drain (2022) through the bridge policies
#   make devnet a local chain to rehearse docs/deploy.md on (guardian devnet up --dir guardian-devnet)
#   make test   every test: formatting, lints, the supply-chain gate (cargo deny:
#               bans, licenses, sources, offline), Rust unit/property/golden tests,
#               forge tests, and the freshness of the committed contract artifacts
#   make advisories   RustSec advisories (needs the network)

.PHONY: demo replay devnet test deps rust-test contracts-test lint supply-chain advisories bench bench-frontrun

# npm ci re-runs only when the lockfile changes.
NPM_STAMP := node_modules/.package-lock.json

demo: deps
	GUARDIAN_LOG=error cargo run --release --quiet -- demo

replay:
	cargo run --release --quiet -- simulate \
	  --config simulations/traces/nomad.toml \
	  --trace simulations/traces/nomad-2022-08-01-drain.csv

devnet: deps
	cargo run --release --quiet -- devnet up --dir guardian-devnet

test: deps lint supply-chain contracts-test rust-test

deps: $(NPM_STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

# deny.toml: no git dependencies, no wildcard versions, only crates.io, allowed licenses.
supply-chain:
	cargo deny --locked --offline check bans licenses sources

advisories:
	cargo deny --locked check advisories

contracts-test: deps
	$(MAKE) -C contracts test check-artifacts

rust-test:
	cargo test --locked --no-fail-fast

bench: bench-frontrun
	cargo bench --bench replay
	cargo bench --bench watcher
	cargo bench --bench executor
	cargo bench --bench journal
	cargo bench --bench observe

# Front-running on anvil (2 s blocks): about 15 s of setup, then ~6 s per trial.
# A quick look: make bench-frontrun TRIALS=10
TRIALS ?= 100
bench-frontrun: deps
	cargo bench --bench frontrun -- --trials $(TRIALS)

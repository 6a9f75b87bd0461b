# iot-jitr: every command a developer or CI needs. Needs only Rust (rustup) and Python 3.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
SAM_VENV := .venv-sam
PYTHON ?= python3
CARGO ?= cargo
# Each arm64 bootstrap stays within 6 MB (issue 10): `make build` fails above it.
BOOTSTRAP_BUDGET := 6000000
# make bench-burst: devices in the burst, and the registration function's reserved concurrency.
DEVICES ?= 1000
CONCURRENCY ?= 5
FUZZ_SECONDS ?= 30
MINISTACK := $(abspath $(VENV)/bin/ministack)
# Cargo's target directory, wherever CARGO_TARGET_DIR or a config puts it (never assume target/).
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

.PHONY: deploy delete newcomer tools docs-check module-check help demo build sam-build test e2e lint fmt-check clippy template-lint toolchain venv unit integration bench bench-no-pie bench-sync bench-cost bench-burst fuzz mutants lambda-loop fixtures clean-state

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

JITR := $(CARGO) run --quiet -p jitr-cli --

demo: ## Replay the sample registration, fleet and lifecycle events on embedded registries (offline)
	@echo "building jitr (a first run compiles the workspace: about 5 minutes on 2 cores; then seconds)"
	$(CARGO) build --quiet -p jitr-cli
	@echo "== registration: events/registration (10 and 11 fail on purpose: jitr exits 2) =="
	@$(JITR) replay events/registration/[0-9]*.json || test $$? -eq 2
	@echo
	@echo "== fleet: events/fleet (two CAs with their own profiles, a retired one; profiles.json) =="
	@$(JITR) replay events/fleet/[0-9]*.json
	@echo
	@echo "== lifecycle: events/lifecycle (webhooks signed with the test secret in registry.json) =="
	@$(JITR) replay --function lifecycle events/lifecycle/[0-9]*.json

# The lint's Python environments install while clippy compiles (-j2): on a fresh clone that
# overlaps about three minutes of pip with cargo instead of adding them.
test: ## Format check, clippy, every test (unit, contract, emulator-backed), the end-to-end run, the README's newcomer check and the cargo-lambda loop
	$(MAKE) --no-print-directory -j2 --output-sync=target lint venv
	$(CARGO) build --workspace --bins
	MINISTACK_BIN=$(MINISTACK) $(CARGO) test --workspace
	$(VENV)/bin/python tests/e2e/run.py
	$(VENV)/bin/python tests/e2e/newcomer.py
	$(MAKE) --no-print-directory $(VENV)/.build-installed
	$(VENV)/bin/python tests/e2e/lambda_loop.py

e2e: venv $(SAM_VENV)/.installed ## make deploy of template.yaml on ministack (AUTH=true), then real MQTT devices through the stack
	$(CARGO) build -p jitr-registration -p jitr-lifecycle -p jitr-cli --bins
	$(VENV)/bin/python tests/e2e/run.py

newcomer: venv $(SAM_VENV)/.installed ## The README's deploy, teardown and local-loop blocks run as typed (deploy against ministack; ~3 min once built)
	$(CARGO) build -p jitr-registration -p jitr-lifecycle -p jitr-cli --bins
	$(VENV)/bin/python tests/e2e/newcomer.py

lint: toolchain fmt-check clippy template-lint docs-check module-check ## rustfmt --check, clippy -D warnings, cfn-lint, sam validate, checkov, IAM vs the Service Authorization Reference, the docs' names and links, no module circle, crates by layer

# Both need the toolchain's components first (make test runs the lint with -j2).
fmt-check: toolchain
	$(CARGO) fmt --all --check

clippy: toolchain
	$(CARGO) clippy --workspace --all-targets -- -D warnings

LINT_VENV := .venv-lint
IAM_VENV := .venv-iam

# Offline guards for what only a real AWS account would show (issue 19): cfn-lint and SAM's own
# validation, the template's policies equal policies/*.json, every IAM action/resource pair
# against the Service Authorization Reference (policy_sentry's bundled copy), and checkov (every
# skipped check is justified in the resource's Metadata).
template-lint: venv $(SAM_VENV)/.installed $(LINT_VENV)/.installed $(IAM_VENV)/.installed ## cfn-lint, sam validate --lint, policy files, IAM reference check, checkov
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/python scripts/check_template.py
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region eu-west-1
	$(IAM_VENV)/bin/python scripts/check_iam.py
	$(LINT_VENV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download

module-check: ## No module of a crate imports another in a circle (the module graph from the sources; tests excepted); the crates depend by layer, the domain without SDK, HTTP or TLS
	$(PYTHON) scripts/check_module_cycles.py
	$(PYTHON) scripts/check_crate_layers.py

docs-check: ## Every link, make target, jitr command, variable, parameter and output the README and docs/ name exists
	$(PYTHON) scripts/check_docs.py

# checkov and policy_sentry pin different policy_sentry versions (checkov through cloudsplaining):
# two small environments, each installed once.
$(LINT_VENV)/.installed: requirements-lint.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-lint.txt
	touch $@

$(IAM_VENV)/.installed: requirements-iam.txt
	$(PYTHON) -m venv $(IAM_VENV)
	$(IAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-iam.txt
	touch $@

toolchain: ## rustfmt and clippy, if the toolchain lacks them
	@rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

venv: $(VENV)/.installed ## The project-local Python environment with the pinned emulator

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

unit: ## Unit and in-memory tests only (no emulator)
	$(CARGO) test --workspace --exclude jitr-tests

integration: venv ## Emulator-backed tests only
	$(CARGO) build -p jitr-registration
	MINISTACK_BIN=$(MINISTACK) $(CARGO) test -p jitr-tests

build: $(VENV)/.build-installed ## arm64 release bootstraps for both functions (cargo-lambda), with sizes
	@rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$$' || rustup target add aarch64-unknown-linux-gnu
	PATH="$(abspath $(VENV))/bin:$$PATH" $(CARGO) lambda build --release --arm64 --bin registration --bin lifecycle
	@over=0; for f in registration lifecycle; do \
	  size=$$(stat -c %s $(TARGET_DIR)/lambda/$$f/bootstrap); \
	  printf '%-13s %s  %s bytes\n' "$$f" "$(TARGET_DIR)/lambda/$$f/bootstrap" "$$size"; \
	  if [ "$$size" -gt $(BOOTSTRAP_BUDGET) ]; then echo "  over the budget of $(BOOTSTRAP_BUDGET) bytes"; over=1; fi; \
	done; exit $$over

sam-build: $(VENV)/.build-installed $(SAM_VENV)/.installed ## sam build (BuildMethod rust-cargolambda) into .aws-sam/
	@rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$$' || rustup target add aarch64-unknown-linux-gnu
	# cargo-lambda's zig (in .venv) must come first on PATH.
	PATH="$(abspath $(VENV))/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region eu-west-1

# make deploy: the stack, the template sam deploy reads (sam build's by default; the end-to-end
# run and the newcomer check give the emulator's packaging, since the emulator runs functions as
# processes of this x86_64 host) and parameters over samconfig.toml's (Key=Value ...).
STACK ?= iot-jitr
BUILT_TEMPLATE := .aws-sam/build/template.yaml
DEPLOY_TEMPLATE ?= $(BUILT_TEMPLATE)
PARAMETERS ?=
# Through the environment, so values keep their own quoting.
export PARAMETERS
DEPLOY = SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/python scripts/deploy.py --sam $(SAM_VENV)/bin/sam --stack $(STACK)

deploy: $(SAM_VENV)/.installed $(if $(filter $(BUILT_TEMPLATE),$(DEPLOY_TEMPLATE)),sam-build) ## Build, sam deploy with samconfig.toml (no prompts), print the outputs and the webhook key's command, run jitr doctor (STACK, PARAMETERS)
	$(DEPLOY) --template $(DEPLOY_TEMPLATE) --parameters "$$PARAMETERS" deploy
	@$(CARGO) build --quiet -p jitr-cli
	@$(JITR) doctor --stack $(STACK) || echo "make deploy: $(STACK) is deployed; each PROBLEM above says what to do next"

delete: $(SAM_VENV)/.installed ## sam delete the stack (STACK), then name what it retains (ledger table, device policy) and how to remove them
	$(DEPLOY) delete

$(SAM_VENV)/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	touch $@

$(VENV)/.build-installed: requirements-build.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-build.txt
	touch $@

tools: $(VENV)/.build-installed ## cargo-lambda and zig into .venv; `export PATH="$$PWD/.venv/bin:$$PATH"` puts them first
	@echo 'installed: cargo-lambda and zig in .venv/bin; run: export PATH="$$PWD/.venv/bin:$$PATH"'

lambda-loop: venv $(VENV)/.build-installed ## cargo lambda watch --env-file local.env + invoke (registration) and a signed webhook (lifecycle) against ministack on a free port (seconds once built)
	$(CARGO) build -p jitr-cli --bin jitr -p jitr-registration -p jitr-lifecycle
	$(VENV)/bin/python tests/e2e/lambda_loop.py

BENCH_ROWS = $(TARGET_DIR)/bench-rows.tsv

bench: venv ## Decision path, CRL at 1M entries, critical path, cold start, memory: one table, docs/benchmarks.md (~5 min after the release build)
	rm -f $(BENCH_ROWS)
	BENCH_ROWS=$(BENCH_ROWS) $(CARGO) bench -p jitr-domain --bench decision_path
	BENCH_ROWS=$(BENCH_ROWS) $(CARGO) bench -p jitr-domain --bench crl_scale
	$(CARGO) build --release -p jitr-tests --bin bench-lambda --bin hello-lambda -p jitr-registration --bin registration -p jitr-lifecycle --bin lifecycle
	BENCH_ROWS=$(BENCH_ROWS) MINISTACK_BIN=$(MINISTACK) $(CARGO) run --release -p jitr-tests --bin bench-lambda
	@echo
	@$(PYTHON) scripts/bench_table.py $(BENCH_ROWS) docs/benchmarks.md

# Not what ships: the functions linked without PIE, beside the shipped ones, to show what PIE's
# start-up relocations cost a cold start (docs/cold-start.md). The last build relinks the shipped,
# PIE binaries.
NO_PIE = -C relocation-model=static -C link-arg=-no-pie
bench-no-pie: venv ## Cold start of both functions with and without PIE, against hello-world (~4 min after the release build)
	$(CARGO) build --release -p jitr-tests --bin bench-lambda --bin hello-lambda
	$(CARGO) rustc --release -p jitr-registration --bin registration -- $(NO_PIE)
	cp $(TARGET_DIR)/release/registration $(TARGET_DIR)/release/registration-no-pie
	$(CARGO) rustc --release -p jitr-lifecycle --bin lifecycle -- $(NO_PIE)
	cp $(TARGET_DIR)/release/lifecycle $(TARGET_DIR)/release/lifecycle-no-pie
	$(CARGO) build --release -p jitr-registration --bin registration -p jitr-lifecycle --bin lifecycle
	MINISTACK_BIN=$(MINISTACK) $(CARGO) run --release -p jitr-tests --bin bench-lambda -- cold-start-no-pie

bench-sync: ## Revocation sync for 100,000 under the IoT quota model, then 1M listed vs 100k indexed and 1.1k vs 1M (sync-scale lines; ~1 min after the build)
	$(CARGO) bench -p jitr-registration --bench revocation_sync

bench-cost: ## Calls and modeled duration per registration, with and without the device ledger (~5 s after the build)
	$(CARGO) bench -p jitr-registration --bench registration_cost

bench-burst: venv ## N devices (DEVICES=1000, ~2 min after the build; 10000, ~20 min) registering at once against IoT's quotas: rate, throttles, audit, docs/burst.svg (SQS=1: through the burst buffer, docs/burst-sqs.svg)
	MINISTACK_BIN=$(MINISTACK) $(CARGO) run --release -p jitr-tests --bin bench-burst -- --devices $(DEVICES) --concurrency $(CONCURRENCY) $(if $(SQS),--sqs)

fuzz: ## cargo-fuzz on every parser of outside input, FUZZ_SECONDS (30) each, corpus in fuzz/corpus (nightly; ~10 min cold build)
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

mutants: ## cargo-mutants over jitr-domain's decision-critical modules; last line `mutants: C caught, M missed, T timeouts, S%` (goal 90 %; about 20 min on 2 cores, docs/mutants.md)
	scripts/mutants.sh

fixtures: ## Regenerate events/ (CAs, certificates, CRL, signed webhooks, events)
	$(CARGO) run --quiet -p jitr-tests --bin generate-fixtures -- events

clean-state: ## Remove emulator state left by test runs
	rm -rf $(TARGET_DIR)/ministack $(TARGET_DIR)/e2e

# vudm: one-command setup, tests, demo and benchmark. See README.md.
# Every target installs what it needs through `setup`, which is idempotent and quick
# on a ready machine (stamps under build/).

PY      := .venv/bin/python
PYTEST  := .venv/bin/pytest
STAMPS  := build/stamps
JOBS    ?= auto

.PHONY: setup host native image distro venv test lint unit integration avocado avocado-ci oracle-diff conformance demo bench clean fuzz

setup: host native image distro venv
	@echo "[setup] ready"

host:
	@bash scripts/setup-host.sh

native: host
	@bash backend/vhost/native/build.sh

image: host
	@bash images/build.sh

# The Debian guest (debootstrap minbase, systemd, kernel, fio) for distro-boot-* scenarios.
distro: host
	@bash distro/build.sh

venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml
	@echo "[setup] python venv (.venv) with vudm and its test tools"
	@test -x $(PY) || python3 -m venv .venv
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]'
	@mkdir -p $(STAMPS) && touch $@

lint: venv
	.venv/bin/ruff check backend guests qmp_scenarios vudm_testing tests examples
	.venv/bin/mypy

unit: venv
	$(PYTEST) -q tests/unit

integration: setup
	$(PYTEST) -q -n $(JOBS) -p no:cacheprovider tests/integration

# Random inputs against a real daemon for FUZZ_SECONDS (the fixed CI set runs in
# `make integration`); figures in results/fuzz.json.
FUZZ_SECONDS ?= 300
fuzz: venv
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(PYTEST) -q -s -p no:cacheprovider \
		tests/integration/test_fuzz.py

# The kernel-oracle diff of the seed 003/004 and mirror scenarios too (CI diffs seed 001's).
oracle-diff: setup
	VUDM_DIFF_ALL=1 $(PYTEST) -q -n $(JOBS) -p no:cacheprovider tests/integration/test_scenario_diff.py

avocado: setup
	bash tests/avocado/run.sh

# The avocado adapter is the same for every scenario (VudmTest -> run_scenario), and
# `make integration` already runs every scenario under pytest: `make test` runs the
# avocado methods tagged `ci` (one or two per scenario family kind) to keep CI near
# 45 minutes; `make avocado` runs them all.
avocado-ci: setup
	bash tests/avocado/run.sh --filter-by-tags=ci

# QEMU's own vhost-user-blk qtest against `vudm serve` (qos-test and the qtest accel
# module built from Debian's QEMU source into build/conformance/, cached there).
conformance: setup
	bash tests/conformance/run.sh

test: setup
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory conformance
	$(MAKE) --no-print-directory integration
	$(MAKE) --no-print-directory avocado-ci

demo: setup
	.venv/bin/vudm scenario run demo --json results/demo.json

bench: setup
	$(PY) -m qmp_scenarios.bench --json results/bench.json

clean:
	rm -rf build .venv results

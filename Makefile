# The two set-up commands of the README, and the helpers they use.
#   make demo  -- create .venv if needed, write the paper-calibrated registry, run the nightly flow
#   make test  -- create .venv if needed, lint (ruff, sqlfluff), run the test suite, then the
#                 Spark engine's tests (pytest -m spark)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export UV_COMPILE_BYTECODE := 1

.PHONY: demo demo-spark test lint install lock clean bench

$(BIN)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,spark]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/cryoreg synth extracts --profile paper
	$(BIN)/cryoreg run --extracts extracts --warehouse warehouse/cryoreg.duckdb --out out

# the same on Apache Spark (local mode; needs a Java 17 runtime), in its own warehouse and out
demo-spark: $(BIN)/.installed
	$(BIN)/cryoreg synth extracts --profile paper
	CRYOREG_ENGINE=spark $(BIN)/cryoreg run --extracts extracts --warehouse warehouse-spark/cryoreg.duckdb --out out-spark

lint: $(BIN)/.installed
	$(BIN)/ruff check flows tests benchmarks
	$(BIN)/ruff format --check flows tests benchmarks
	cd dbt_project && ../$(BIN)/sqlfluff lint models macros tests --disable-progress-bar

test: lint
	$(BIN)/pytest -n 2 --dist loadgroup tests
	$(BIN)/pytest -n 2 --dist loadgroup -m spark tests

# make bench SIZES="paper 10000" LABEL=after -- the scale benchmark (minutes; not a test)
SIZES ?= paper 10000 100000 1000000
LABEL ?= run
bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench.py --sizes $(SIZES) --label "$(LABEL)"

lock:
	rm -rf /tmp/cryoreg-lock && $(PYTHON) -m venv /tmp/cryoreg-lock
	/tmp/cryoreg-lock/bin/pip install --quiet -e '.[dev,spark]'
	{ sed -n 1,2p requirements.lock; /tmp/cryoreg-lock/bin/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf out warehouse out-spark warehouse-spark extracts .prefect dbt_project/target dbt_project/logs

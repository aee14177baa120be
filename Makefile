# make sweep: set up .venv on first use, then run the quick-start sweep.
# make test:  set up .venv on first use, then ruff and pytest.
# The venv is rebuilt only when pyproject.toml changes.

VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
# The first Python >= 3.12 on PATH (pyenv's shims follow .python-version).
BASE_PYTHON := $(shell for p in python3.12 python3.13 python3 python; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' \
	2>/dev/null && echo $$p && break; done)

# PostgreSQL's server programs: the distributed-mode tests start a real server.
POSTGRES := $(shell command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n 1)

.PHONY: sweep test lint postgres browser visdom-assets clean

sweep: $(STAMP) visdom-assets
	$(PY) -m harness sweep experiments/quickstart.yaml

# One pytest worker per CPU, a test file's tests on one worker (tests/conftest.py).
test: $(STAMP) lint postgres browser visdom-assets
	$(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder

postgres:
	@test -n "$(POSTGRES)" || { echo "installing PostgreSQL for the distributed tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# Headless Chromium and its driver: the page tests (tests/test_pages.py) load report.html,
# a Visdom environment and TensorBoard in it. Debian's packages, so nothing is downloaded
# when the tests run.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { echo "installing Chromium for the page tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

# The Visdom web page's scripts (pip's Visdom lacks them), fetched with npm once.
visdom-assets: $(STAMP)
	@$(PY) scripts/visdom_assets.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

$(STAMP): pyproject.toml
	@test -n "$(BASE_PYTHON)" || { echo "harness needs Python >= 3.12 (try: pyenv install 3.12)" >&2; exit 2; }
	test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) results

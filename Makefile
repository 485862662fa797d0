# The two commands a newcomer needs: `make demo` and `make test`.
# Both create the local virtualenv(s) on first use; only python3, python3-venv and make
# are needed on the machine.
PYTHON ?= python3
VENV := .venv
# Debian 12 ships websockets 10.4 (legacy client only): the suite runs against it too.
VENV_WS10 := .venv-ws10

.PHONY: demo test test-latest test-ws10 clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

$(VENV_WS10)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_WS10)
	$(VENV_WS10)/bin/pip install -q --disable-pip-version-check -e '.[test]' 'websockets==10.4'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/station-agent demo

test: test-latest test-ws10

test-latest: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

test-ws10: $(VENV_WS10)/.installed
	$(VENV_WS10)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) $(VENV_WS10) *.egg-info

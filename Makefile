# The two commands a newcomer needs: `make demo` and `make test`.
# Both create the local virtualenv(s) on first use; only python3, python3-venv and make
# are needed on the machine.
PYTHON ?= python3
VENV := .venv
# The suite also runs against the versions Debian 12 ships (the .deb depends on them):
# websockets 10.4 (legacy client only), pyserial 3.5, python-can 4.1, cryptography 38,
# sdnotify 0.3.1.
VENV_BOOKWORM := .venv-bookworm
BOOKWORM_PINS := 'websockets==10.4' 'pyserial==3.5' 'python-can==4.1.0' 'cryptography==38.0.4' 'sdnotify==0.3.1'

.PHONY: demo csms test test-latest test-bookworm clean conformance

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

$(VENV_BOOKWORM)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_BOOKWORM)
	$(VENV_BOOKWORM)/bin/pip install -q --disable-pip-version-check -e '.[test]' $(BOOKWORM_PINS)
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/station-agent demo

# A CSMS on ws://127.0.0.1:9000/ocpp that prints the exchange, for
# `.venv/bin/station-agent run --config config/dev.toml` in another terminal.
csms: $(VENV)/.installed
	$(VENV)/bin/station-agent csms --password CS-DEV-001=dev-password-not-secret

test: test-latest test-bookworm

# Test processes (pytest-xdist); 2 is what CI has.
TEST_JOBS ?= 2

test-latest: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -n $(TEST_JOBS)

test-bookworm: $(VENV_BOOKWORM)/.installed
	$(VENV_BOOKWORM)/bin/python -m pytest -q -n $(TEST_JOBS)

# The Part 6 Core cases (they also run in `make test`), and docs/conformance.md from them.
conformance: $(VENV)/.installed
	CONFORMANCE_RESULTS=.conformance-results.json $(VENV)/bin/python -m pytest -q tests/conformance || true
	$(VENV)/bin/python tools/conformance_report.py .conformance-results.json docs/conformance.md

clean:
	rm -rf $(VENV) $(VENV_BOOKWORM) *.egg-info

# The Debian package (debian/), built from a copy of the tree: dist/station-agent_*_all.deb.
# Needs dpkg-dev, debhelper, dh-python, pybuild-plugin-pyproject, python3-setuptools.
.PHONY: deb package-test package-tools vm-test vm-tools
# What the two need from Debian (CI installs them as root with `make package-tools`).
PACKAGE_TOOLS := mmdebstrap systemd-container debhelper dh-python pybuild-plugin-pyproject \
	lintian python3-setuptools dpkg-dev util-linux
deb:
	debian/tests/build-deb dist

# The package in a clean Debian 12 root (mmdebstrap) and booted under systemd
# (systemd-nspawn): needs root and Debian's archive, else it says SKIP. A few minutes.
package-test: $(VENV)/.installed
	debian/tests/clean-root

# The VM rig (tests/vm/): the package in a bookworm guest under QEMU/KVM, cut off at
# random moments (real power cuts). Root, /dev/kvm and Debian's archive, else SKIP.
VM_TOOLS := qemu-system-x86 nbdkit e2fsprogs mmdebstrap dpkg-dev debhelper dh-python \
	pybuild-plugin-pyproject python3-setuptools
vm-test: $(VENV)/.installed
	tests/vm/run

package-tools: TOOLS = $(PACKAGE_TOOLS)
vm-tools: TOOLS = $(VM_TOOLS)
package-tools vm-tools:
	@if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "$@: not root on Debian; install $(TOOLS) yourself"; \
	else \
	  export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin; \
	  apt-get install -y -q $(TOOLS) >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q $(TOOLS) >/dev/null; } || \
	  echo "$@: apt-get could not install $(TOOLS)"; \
	fi

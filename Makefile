# hutch: the README's two commands are `make demo` and `make test`; both start from a
# fresh Debian 12 machine as root and install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Debian's interpreter, not a pyenv shim: entry points must start fast.
SYSPY := /usr/bin/python3
APT_PKGS := python3 python3-venv runc containerd busybox-static libseccomp2 uidmap \
	iproute2 hyperfine procps docker-registry skopeo umoci btrfs-progs debootstrap tini \
	nftables libnftables1
PYTEST_ARGS ?=

.PHONY: install apt venv demo test lint unit integration e2e bench clean

install: apt venv
	@# Byte-compile now: with PYTHONDONTWRITEBYTECODE set, every start would recompile.
	@$(PY) -m compileall -q src >/dev/null

apt:
	@missing=""; for p in $(APT_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install-launchers.sh
	@test -x $(PY) || $(SYSPY) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	scripts/install-launchers.sh
	@touch $@

demo: install
	bash scripts/demo.sh

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

unit: venv
	$(PY) -m pytest -m unit tests/unit $(PYTEST_ARGS)

# pytest exits 5 when it ran no test; make treats any non-zero exit as failure.
test: install lint
	$(PY) -m pytest tests $(PYTEST_ARGS)

# The peers the benchmarks measure beside hutch (not needed by the tests).
BENCH_PKGS := podman

bench: install
	@dpkg-query -W -f='$${Status}' $(BENCH_PKGS) 2>/dev/null | grep -q 'ok installed' || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_PKGS) >/dev/null)
	$(PY) bench/runtime_start

clean:
	rm -rf $(VENV) build src/*.egg-info

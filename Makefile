# pyhost.scgi — the two commands of the README, and quicker targets for the development loop.
#   make demo    brings the demo stack up in a local container and shows a live response
#   make test    lint + unit + sanity + every Molecule scenario + the ansible-core matrix (what CI runs)
#   make lint | make unit | make sanity | make molecule SCENARIO=default | make matrix MATRIX=2.16:3.11
#   make dist | make installed | make release | make images | make demo-down | make clean
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0

SCENARIOS := default debian13 cluster
SCENARIO ?= $(SCENARIOS)
# ansible-core:Python legs of the matrix, besides the main virtualenv's
# ansible-core 2.19 on Debian 12's Python 3.11, which runs everything else.
# Each spans the Pythons that ansible-core supports as a controller.
MATRIX ?= 2.16:3.11 2.17:3.12 2.18:3.13 2.20:3.12 2.21:3.13
DEMO_CONTAINER := pyhost-scgi-demo
DEMO_PORT ?= 8080

.PHONY: help venv lint unit sanity dist installed molecule matrix test release demo demo-down images clean

help:
	@sed -n '2,5p' Makefile | sed 's/^# \{0,1\}//'

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	scripts/ensure-host-tools
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

lint: venv
	yamllint --strict .
	ansible-lint
	antsibull-changelog lint
	scripts/check-release

unit: venv
	python -m pytest -q tests/unit

sanity: venv
	scripts/sanity

# The collection as users get it: the tarball `ansible-galaxy collection build`
# makes, installed into a collections path of its own. The debian13 scenario
# and the matrix run from it.
dist: venv
	rm -rf .cache/dist
	ansible-galaxy collection build --output-path .cache/dist .

installed: dist
	rm -rf .cache/installed
	ANSIBLE_COLLECTIONS_PATH=.cache/installed \
	    ansible-galaxy collection install --offline -p .cache/installed .cache/dist/pyhost-scgi-*.tar.gz

# Local systemd images for Debian 12 and 13; rebuilt only when their recipe changes.
images:
	scripts/ensure-docker
	mkdir -p .cache
	scripts/build-image bookworm | tail -n 1 > .cache/image-bookworm
	scripts/build-image trixie | tail -n 1 > .cache/image-trixie

# The scenarios at the same time, each line prefixed with its scenario's name
# (scripts/molecule-scenarios).
molecule: venv images installed
	scripts/molecule-scenarios $(SCENARIO)

# The legs one after the other, each in its own container (scripts/matrix).
matrix: venv images installed
	scripts/matrix $(MATRIX)

# Two lanes at once, about as long as each other: the single-host scenarios,
# and the cluster scenario followed by the matrix. What failed is repeated at
# the very end, whichever lane ended last.
test: lint unit sanity venv images installed
	scripts/molecule-scenarios default debian13 & single=$$!; \
	{ lane=0; scripts/molecule-scenarios cluster || lane=1; scripts/matrix $(MATRIX) || lane=1; exit $$lane; } & cluster=$$!; \
	status=0; wait $$single || status=1; wait $$cluster || status=1; \
	if [ $$status != 0 ]; then \
	    scripts/molecule-scenarios --report default debian13 cluster; \
	    grep -h 'FAILED' .cache/matrix/results 2>/dev/null || true; \
	fi; \
	exit $$status

# The changelog for galaxy.yml's version from changelogs/fragments, and the
# tarball, in .cache/dist.
release: venv
	antsibull-changelog release --version "$$(python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')"
	$(MAKE) --no-print-directory dist
	@echo "release: CHANGELOG.rst and changelogs/changelog.yaml updated; the tarball: $$(ls .cache/dist/*.tar.gz)"

demo: venv
	scripts/ensure-docker
	scripts/demo "$$(scripts/build-image bookworm | tail -n 1)" $(DEMO_CONTAINER) $(DEMO_PORT)

demo-down:
	docker rm -f $(DEMO_CONTAINER)

clean: demo-down
	rm -rf $(VENV) .cache .pytest_cache

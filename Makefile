# The README's two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both set up what they need first: Debian packages for the TTS voices and a .venv.
SHELL := /bin/bash
PY := .venv/bin/python
# the non-English festival voices are extra real speakers for the voice-encoder recipe
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
  festvox-italp16k festvox-itapc16k festvox-ca-ona-hts festvox-czech-dita festvox-czech-krb \
  festvox-czech-machac festvox-czech-ph festvox-ru festvox-suopuhe-lj festvox-suopuhe-mv
# the browser test drives Debian's chromium (playwright cannot download its own here)
TEST_APT_PACKAGES := chromium
DEMO_ARGS ?=

.PHONY: setup apt voices bench-voices apt-test venv demo test test-fast fuzz soak bench bench-one classifier classifier-int8 tables screenshot lint clean

setup: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# the voices in Debian contrib and non-free (issue 19): those components are enabled for
# these packages only (an apt pin keeps every other package of them out), then installed
VOICE_APT_PACKAGES := mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 rhvoice rhvoice-english \
  libttspico-utils festvox-rablpc16k festvox-don
# more speakers of those engines for benchmarks/trace.py (issue 21), `make bench-voices`: every
# MBROLA database of Debian with an espeak-ng voice that reads English text with few gaps,
# the RHVoice voices of other languages whose licence allows training, festival's Spanish el
BENCH_VOICE_APT_PACKAGES := $(foreach v,af1 br1 br3 ca1 ca2 cz2 de1 de2 de3 de4 de5 de6 de7 \
  de8 ee1 es4 fr1 fr2 fr3 fr4 fr5 fr6 fr7 hu1 ic1 id1 it3 it4 lt1 nl2 nl3 pl1 pt1 ro1 sw1 sw2 \
  tr1 tr2,mbrola-$(v)) rhvoice-esperanto rhvoice-brazilian-portuguese festvox-ellpc11k
VOICE_APT_ALLOWED := $(VOICE_APT_PACKAGES) $(BENCH_VOICE_APT_PACKAGES) mbrola \
  librhvoice-core7 librhvoice-audio2 libttspico0 libttspico-data festlex-oald
voices:
	@missing=""; for p in $(VOICE_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian contrib/non-free voice packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  printf '%s\n' "# whichvoice \`make voices\`: Debian contrib and non-free, for its voice packages only" \
	    "Types: deb" "URIs: http://deb.debian.org/debian" \
	    "Suites: $$(. /etc/os-release; echo $$VERSION_CODENAME) $$(. /etc/os-release; echo $$VERSION_CODENAME)-updates" \
	    "Components: contrib non-free" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
	    | $$SUDO tee /etc/apt/sources.list.d/whichvoice-voices.sources >/dev/null; \
	  printf '%s\n' "# whichvoice \`make voices\`: from contrib and non-free, only the voice packages" \
	    "Package: *" "Pin: release o=Debian, c=contrib" "Pin-Priority: -1" "" \
	    "Package: *" "Pin: release o=Debian, c=non-free" "Pin-Priority: -1" "" \
	    "Package: $(VOICE_APT_ALLOWED)" "Pin: release o=Debian" "Pin-Priority: 500" \
	    | $$SUDO tee /etc/apt/preferences.d/whichvoice-voices >/dev/null; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

bench-voices:
	@$(MAKE) --no-print-directory voices VOICE_APT_PACKAGES="$(VOICE_APT_PACKAGES) $(BENCH_VOICE_APT_PACKAGES)"

apt-test:
	@$(MAKE) --no-print-directory apt APT_PACKAGES="$(TEST_APT_PACKAGES)"

venv: .venv/.installed

# resemblyzer (`--model resemblyzer`) goes in without its metadata's dependencies: those are
# webrtcvad, an sdist whose module imports the pkg_resources that setuptools no longer ships,
# and the Python 2 `typing` backport; the pretrained extra brings webrtcvad-wheels and the rest.
.venv/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,pretrained,onnx,parquet,dask,eval,neural,diarize]'
	$(PY) -m pip install -q -c constraints.txt --no-deps resemblyzer
	@touch $@

demo: setup
	.venv/bin/whichvoice demo $(DEMO_ARGS)

# the whole suite on TEST_WORKERS processes (pytest-xdist), each given whole test files, so
# that a module's fixtures (a trained encoder, a server) are made once
TEST_WORKERS ?= 2
test: setup voices apt-test
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# the fast subset: no synthesis, training or servers (under a minute on 2 cores)
test-fast: venv
	.venv/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

# longer fuzzing than `make test` does: schemathesis on every route, hypothesis on the decoder
fuzz: setup
	WHICHVOICE_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest \
	  tests/test_serve_fuzz.py tests/test_audio_fuzz.py $(PYTEST_ARGS)

# 10 minutes at concurrency 16, slow uploads, disconnects, kill -9: benchmarks/results/soak.json
soak: setup
	.venv/bin/python benchmarks/soak.py

# every published result again, each by the command its JSON records, at the commit it records
# (benchmarks/rerun.py: a git worktree a result; scratch folders under BENCH_WORK), oldest
# first, one after the other (they share the cores: never in parallel), then the tables of
# README.md and docs/ regenerated from the JSON they wrote (several hours on 2 cores).
# `make bench-one RESULT=live` re-runs one; `python benchmarks/rerun.py --here NAME` measures
# today's code with that result's settings
BENCH_WORK ?= bench-work
bench: setup bench-voices
	.venv/bin/python benchmarks/rerun.py --all --workdir $(BENCH_WORK)
	.venv/bin/python benchmarks/tables.py

bench-one: setup bench-voices
	.venv/bin/python benchmarks/rerun.py $(RESULT) --workdir $(BENCH_WORK)
	.venv/bin/python benchmarks/tables.py

# remake the bundled classifier: the robustness benchmark's default model, its open-set
# thresholds fitted on dev data, then its open-set figures on test data (the card's tables)
classifier: setup
	.venv/bin/python benchmarks/robustness.py --split test --work $(BENCH_WORK)/robustness
	.venv/bin/python benchmarks/classifier.py $(BENCH_WORK)/robustness/default \
	  --work $(BENCH_WORK)/robustness
	.venv/bin/python benchmarks/openset.py --work $(BENCH_WORK)/openset
	.venv/bin/python benchmarks/tables.py

# the bundled classifier's int8 network (`--backend onnx-int8`), and the bundled encoder's that
# its open set reads with that backend, calibrated on its own voices reading training
# sentences (never the dev or test pool's)
classifier-int8: setup
	.venv/bin/python -m whichvoice synth $(BENCH_WORK)/int8-calibration --voices default8 \
	  --sentences 12 --assign all --quiet
	.venv/bin/python -m whichvoice export src/whichvoice/data/classifier --overwrite \
	  --onnx src/whichvoice/data/classifier/model.int8.onnx --int8 \
	  --calibration $(BENCH_WORK)/int8-calibration/audio
	.venv/bin/python -m whichvoice export src/whichvoice/data/encoder --overwrite \
	  --onnx src/whichvoice/data/encoder/model.int8.onnx --int8 \
	  --calibration $(BENCH_WORK)/int8-calibration/audio

# the tables of measured figures in README.md and docs/, from benchmarks/results/*.json
tables: venv
	.venv/bin/python benchmarks/tables.py

# refresh the README's picture of the page (the tests write theirs to a temp dir)
screenshot: setup apt-test
	WHICHVOICE_PAGE_SCREENSHOT=$(CURDIR)/docs/page.png .venv/bin/python -m pytest \
	  tests/test_page.py -k upload_shows $(PYTEST_ARGS)

lint: venv
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks

clean:
	rm -rf .venv build src/*.egg-info .pytest_cache

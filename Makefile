# grok.c - top-level entry points. Everything goes through CMake; this file only
# strings the steps together so that a fresh machine needs two commands:
#   make run    set up, build, and generate text with the default model
#   make test   set up, build, and run every test (also under ASan + UBSan)
#   make install PREFIX=DIR   install grok, grok.h, libgrok and grok.pc under DIR
# `make run` installs only what building and running needs; `make test` adds
# the test-only peers (scripts/setup-deps.sh run|test).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
PYTHON     ?= /usr/bin/python3
PREFIX     ?= /usr/local
MODEL      ?= models/default.gguf
RANDOM_MODEL = $(BUILD)/random-grok2.gguf

.PHONY: all setup setup-test build build-asan run test test-asan bench clean format install fuzz fuzz-merge fuzz-total

all: build

setup:
	@./scripts/setup-deps.sh run

setup-test:
	@./scripts/setup-deps.sh test

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: setup-test
	@CC=clang cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGK_SANITIZE=ON -DGK_FUZZ=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# A random model stands in until a trained default model ships in models/.
$(RANDOM_MODEL): tests/reference/make_model.py | build
	@$(PYTHON) tests/reference/make_model.py $@ --kind grok2 --seed 1

run: build
	@if [ -f $(MODEL) ]; then \
	  ./$(BUILD)/grok run -m $(MODEL) -p "The history of" -n 64 -v; \
	else \
	  $(MAKE) --no-print-directory $(RANDOM_MODEL) && \
	  echo "make run: no trained model in $(MODEL) yet; running a RANDOMLY INITIALISED" && \
	  echo "          Grok-2-shaped model ($(RANDOM_MODEL)), so the output is noise (token ids)." && \
	  ./$(BUILD)/grok info $(RANDOM_MODEL) && \
	  ./$(BUILD)/grok run -m $(RANDOM_MODEL) --tokens 1,2,3,4,5,6,7,8 -n 32 --seed 1 -v; \
	fi

test: setup-test build
	@cd $(BUILD) && ctest -j$(JOBS) --output-on-failure
	@$(MAKE) --no-print-directory test-asan

test-asan: build-asan
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest -j$(JOBS) --output-on-failure

# Fuzzing campaign (not part of `make test`): every fuzz_* target of the sanitizer
# build for FUZZ_SECONDS each (default 60), new corpus entries and findings under
# FUZZ_OUT (default /tmp/grok-fuzz); fails when anything is found. fuzz-merge adds
# the grown entries that add coverage to tests/fuzz/corpus/. See scripts/fuzz.sh.
fuzz: setup
	@ASAN_BUILD=$(ASAN_BUILD) JOBS=$(JOBS) ./scripts/fuzz.sh run

fuzz-merge: setup
	@ASAN_BUILD=$(ASAN_BUILD) JOBS=$(JOBS) ./scripts/fuzz.sh merge

# CPU time each target has had over every recorded campaign (tests/fuzz/campaign.tsv).
fuzz-total:
	@./scripts/fuzz.sh total

bench: build
	@if [ -f $(MODEL) ]; then ./$(BUILD)/grok bench -m $(MODEL); \
	else $(MAKE) --no-print-directory $(RANDOM_MODEL) && ./$(BUILD)/grok bench -m $(RANDOM_MODEL); fi

install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

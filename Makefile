# The two commands a newcomer needs (see README.md):
#   make run    install Debian packages, build, start a server for "localhost"
#   make test   install Debian packages, build (plain and ASan+UBSan), run every test
BUILD      ?= build
BUILD_SAN  ?= build-asan
RUNDIR     ?= run
JOBS       ?= $(shell nproc)
PREFIX     ?= /usr/local

.PHONY: all deps build build-asan run test test-unit test-integration install clean format

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DPV_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_SAN) -j $(JOBS)

run: build
	@scripts/run-dev.sh $(BUILD) $(RUNDIR)

# Unit and integration tests run against the sanitizer build (every bad-input case
# exercised under ASan+UBSan), unit tests against the release build as well.
test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -R unit/
	cd $(BUILD_SAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN)

# Slow checks, not part of `make test`:
#   make fuzz [FUZZ_SECONDS=300]  every libFuzzer target in tests/fuzz/ (clang), N s each
#   make valgrind                 an integration subset against $(BUILD)/peyvand under valgrind
#   make bench                    peyvand vs Prosody vs ejabberd (bench/run; bench/results/)
FUZZ_SECONDS ?= 30
VALGRIND ?= valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
VALGRIND_TESTS ?= test_login.py test_messages.py test_sm.py test_roster_presence.py test_iq.py
.PHONY: fuzz valgrind bench
fuzz: deps
	tests/fuzz/run.sh $(FUZZ_SECONDS)

valgrind: build
	@dpkg-query -W -f='$${Status}' valgrind 2>/dev/null | grep -q "ok installed" || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
	cd tests/integration && PEYVAND_BIN=$(CURDIR)/$(BUILD)/peyvand \
		PEYVANDCTL_BIN=$(CURDIR)/$(BUILD)/peyvandctl PEYVAND_WRAPPER="$(VALGRIND)" \
		PEYVAND_LOG_DIR=$(CURDIR)/$(BUILD)/valgrind-logs \
		/usr/bin/python3 -m pytest -q $(VALGRIND_TESTS)

bench: deps
	bench/run

# ocp-proxy — build, test and demo.  `make` builds build/ocp-proxy and the test tools.
CC       ?= cc
BUILD    ?= build
PKGS      = libevent-dev libssl-dev libyajl-dev libinih-dev pkg-config make gcc python3 openssl curl \
            valgrind util-linux e2fsprogs passwd iproute2
LIBS      = -levent_openssl -levent_core -levent_extra -lssl -lcrypto -lyajl -linih -lpthread
WARN      = -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wcast-qual -Wno-unused-parameter
HARDEN    = -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
OPT      ?= -O2 -g
WERROR   ?= -Werror
CFLAGS   += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(WERROR) $(HARDEN) -Iproxy
LDFLAGS  += -pie -Wl,-z,relro,-z,now

PROXY_SRC = $(filter-out proxy/main.c $(WIP),$(wildcard proxy/*.c))
PROXY_OBJ = $(PROXY_SRC:proxy/%.c=$(BUILD)/obj/%.o)
SIM_SRC   = $(wildcard tests/sim/*.c)
SIM_OBJ   = $(SIM_SRC:tests/sim/%.c=$(BUILD)/obj/sim/%.o)
VSIM_SRC  = $(wildcard tests/vault/*.c)
VSIM_OBJ  = $(VSIM_SRC:tests/vault/%.c=$(BUILD)/obj/vsim/%.o)
UNIT_SRC  = $(wildcard tests/unit/test_*.c)
UNIT_BIN  = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/%)

.PHONY: all deps check unit integration asan asan-build tsan tsan-build fuzz bench demo clean
all: $(BUILD)/ocp-proxy $(BUILD)/ocp-sim $(BUILD)/ocp-vault-sim $(UNIT_BIN)

$(BUILD)/obj/%.o: proxy/%.c proxy/*.h | $(BUILD)/obj
	@echo "  CC      $<"; $(CC) $(CFLAGS) -c -o $@ $<
$(BUILD)/obj/sim/%.o: tests/sim/%.c tests/sim/*.h proxy/*.h | $(BUILD)/obj/sim
	@echo "  CC      $<"; $(CC) $(CFLAGS) -Itests/sim -c -o $@ $<
$(BUILD)/obj $(BUILD)/obj/sim:
	mkdir -p $@
$(BUILD)/libocp.a: $(PROXY_OBJ)
	@rm -f $@; ar rcs $@ $^
$(BUILD)/ocp-proxy: proxy/main.c $(BUILD)/libocp.a
	@echo "  LD      $@"; $(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libocp.a $(LIBS)
$(BUILD)/ocp-sim: $(SIM_OBJ) $(BUILD)/libocp.a
	@echo "  LD      $@"; $(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(SIM_OBJ) $(BUILD)/libocp.a $(LIBS)
$(BUILD)/obj/vsim/%.o: tests/vault/%.c tests/vault/*.h proxy/*.h | $(BUILD)/obj/vsim
	@echo "  CC      $<"; $(CC) $(CFLAGS) -Itests/vault -c -o $@ $<
$(BUILD)/obj/vsim:
	mkdir -p $@
$(BUILD)/ocp-vault-sim: $(VSIM_OBJ) $(BUILD)/libocp.a
	@echo "  LD      $@"; $(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(VSIM_OBJ) $(BUILD)/libocp.a $(LIBS)
$(BUILD)/test_%: tests/unit/test_%.c tests/unit/unit.h $(BUILD)/libocp.a
	@echo "  LD      $@"; $(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(BUILD)/libocp.a $(LIBS)

# Install the Debian packages the build and tests need (only when one is missing).
deps:
	@missing=""; for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

check: deps
	@$(MAKE) --no-print-directory all
	@tests/check.sh

unit: all
	@tests/run-all.sh $(BUILD) unit
integration: all
	@tests/run-all.sh $(BUILD) integration

SAN = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
asan-build:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g $(SAN)" LDFLAGS="$(SAN)" HARDEN="-fPIE" all
asan: deps asan-build
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 OCP_SLOW=2 tests/run-all.sh build/asan

# ThreadSanitizer over the suites that drive the audit sync thread, the one
# thread besides the event loop.  `make check` runs the audit suite under it
# (stage 5); `make tsan` adds the proxy and hostile suites.  Reports go to
# build/tsan/logs/; any fails it.
tsan-build:
	@$(MAKE) --no-print-directory BUILD=build/tsan OPT="-O1 -g -fsanitize=thread" \
	    LDFLAGS="-fsanitize=thread" HARDEN="-fPIE" all
tsan: deps tsan-build
	@rm -rf build/tsan/logs; mkdir -p build/tsan/logs; rc=0; \
	for t in test_audit test_proxy test_hostile; do \
		TSAN_OPTIONS="log_path=$(CURDIR)/build/tsan/logs/tsan halt_on_error=0" \
		OCP_BUILD=build/tsan OCP_SLOW=3 python3 tests/integration/$$t.py \
		    >build/tsan/logs/$$t.out 2>&1 || rc=1; tail -n 1 build/tsan/logs/$$t.out; \
	done; \
	if ls build/tsan/logs/tsan* >/dev/null 2>&1; then \
		echo "tsan: reports in build/tsan/logs/"; exit 1; fi; \
	echo "tsan: no reports"; exit $$rc

# libFuzzer targets (clang), each for FUZZ_SECONDS on a copy of its seed corpus.
FUZZ_SECONDS ?= 30
fuzz: deps
	@dpkg -s clang >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null; }
	tests/fuzz/run.sh $(FUZZ_SECONDS)

# Benchmark against the reference peers (issue 5); installs wrk, nginx and its Lua module when
# missing, never fails on slow figures.  Table in $(BUILD)/bench/results.md.
bench: deps
	@bench/run.sh $(BUILD)

demo: deps all
	@tests/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD)

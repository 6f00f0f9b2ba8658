# virtconsole: `make demo` for a working serial console; `make test` for
# the whole suite, on CI or a throwaway machine (it reconfigures and
# restarts libvirtd); `make test-unit` for the tests that leave the host
# alone. See README.md.
GO      ?= go
BIN     := bin/virtconsole
FUZZBUDGET ?= 20000x
# The unit phase runs go test through gotestsum (a tool in go.mod): a line
# per package, a failed test's output as it fails, and at the end the
# skipped and failed tests with their messages and a closing line
# "DONE N tests, N skipped, N failures in Ns".
GOTESTSUM := $(GO) tool gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg --format-icons text
# TestMeasure* tests only measure and take minutes: make measure-scale.
TESTFLAGS := -race -count=1 -p 1 -timeout 25m -skip '^TestMeasure'
# The race runtime sleeps a second before every exit (GORACE's
# atexit_sleep_ms, 1000 by default), once per test binary, one after the
# other (-p 1): not in the unit phase, where races are reported as they
# are found and still fail the run (exit 66). A GORACE that sets it wins.
RACEOPTS := $(if $(findstring atexit_sleep_ms=,$(GORACE)),$(GORACE),$(strip $(GORACE) atexit_sleep_ms=0))

.PHONY: all build test test-unit vet unit fuzz bench bench-table bench-json bench-idle bench-syscalls measure-scale soak demo generate deps deps-demo check-go clean

all: build

# Go before anything else, with the remedy.
check-go:
	@command -v $(GO) >/dev/null || { echo "make: $(GO) not found; install Go 1.26 and put /usr/local/go/bin on PATH" >&2; exit 1; }

build: check-go
	$(GO) build -o $(BIN) ./cmd/virtconsole

# Everything the test suite needs: Debian packages (QEMU, libvirt, sshd,
# VNC/SPICE clients, Xvfb, Chromium, ...), npm packages, Go modules.
deps: check-go
	bash .ci/install-deps

# What the demo needs: QEMU, a kernel and busybox for its guest, Go modules.
deps-demo: check-go
	bash .ci/install-deps demo

# The whole suite, for CI or a throwaway machine: vet, each fuzzer briefly,
# every test with the race detector (end-to-end tests run real QEMU,
# libvirtd and the built binary), then each phase's result and duration.
# The libvirt tests change the host for good: a block appended to
# /etc/libvirt/qemu.conf and to libvirtd.conf, certificates in
# /etc/pki/virtconsole-test, libvirtd restarted with --listen (TLS on
# 127.0.0.1:16514) and left running, like virtlogd. -p 1: they share (and
# restart) one libvirtd.
test: check-go
	@MAKE="$(MAKE)" bash .ci/phases vet fuzz unit

# For a machine one cares about: vet and every test except the libvirt
# ones, which VIRTCONSOLE_NO_LIBVIRT makes skip before they change
# anything (under CI they fail instead).
test-unit: export VIRTCONSOLE_NO_LIBVIRT = 1
test-unit: check-go
	@MAKE="$(MAKE)" bash .ci/phases vet unit

vet: check-go
	$(GO) vet ./...

unit: check-go
	GORACE='$(RACEOPTS)' $(GOTESTSUM) -- $(TESTFLAGS) ./...

fuzz: check-go
	@bash .ci/fuzz $(FUZZBUDGET)

# Throughput and allocations of the byte pump (tunnel), session setup
# time through the proxy with TLS on both legs and idle memory per session
# (cmd/virtconsole, real QEMU and the proxy binary), and the proxy binary's
# throughput, echo latency and CPU per GB against websockify's (skipped
# when websockify is not installed). No race detector.
bench: check-go
	$(GO) test -run XXX -bench . -benchmem ./tunnel/...
	$(GO) test -run XXX -bench VNCSessionSetup -benchtime 200x ./cmd/virtconsole/
	$(GO) test -run XXX -bench IdleSessionMemory -benchtime 1x -count 3 ./cmd/virtconsole/
	mkdir -p $(BENCH_PROFILES)
	VIRTCONSOLE_BENCH_PROFILE=$(BENCH_PROFILES) $(GO) test -run XXX -bench '^BenchmarkTable$$' -benchtime 1x -timeout 60m ./cmd/virtconsole/

# Issue 16's side-by-side table alone (raw TCP, a minimal gorilla proxy,
# websockify when installed, virtconsole; plain and TLS; medians of
# VIRTCONSOLE_BENCH_ROUNDS=3 interleaved rounds), and its raw figures as
# JSON in bench.json. VIRTCONSOLE_BENCH_MIB (512) and VIRTCONSOLE_BENCH_IDLE
# (1000 sessions) size it; VIRTCONSOLE_BENCH_BASELINE=/path/to/virtconsole
# adds another build (e.g. main's) as the contender "baseline", for a
# before/after in one run; see BenchmarkTable in cmd/virtconsole.
#
# Profiles of virtconsole's proxy go to BENCH_PROFILES (bench-profiles/),
# MODE being plain or tls: from the table (bench, bench-table,
# bench-json) {heap,goroutine}-MODE-idle-{base,loaded}.txt (text, the
# heap's after a forced GC and with runtime.MemStats) with the idle
# sessions open, cpu-MODE-{up,down,echo}.pprof (4 s each) and
# allocs-MODE.pprof (the whole run) for "go tool pprof -top FILE"; from
# bench-idle {heap,goroutine}-MODE-sessions-{base,loaded,after}.txt; from
# bench-syscalls strace -c's summaries, strace-MODE-PEER-WORKLOAD.txt.
BENCH_PROFILES ?= $(CURDIR)/bench-profiles

bench-table: check-go
	mkdir -p $(BENCH_PROFILES)
	VIRTCONSOLE_BENCH_PROFILE=$(BENCH_PROFILES) $(GO) test -run XXX -bench '^BenchmarkTable$$' -benchtime 1x -timeout 60m ./cmd/virtconsole/

bench-json: check-go
	mkdir -p $(BENCH_PROFILES)
	VIRTCONSOLE_BENCH_PROFILE=$(BENCH_PROFILES) VIRTCONSOLE_BENCH_JSON=$(CURDIR)/bench.json $(GO) test -run XXX -bench '^BenchmarkTable$$' -benchtime 1x -timeout 60m ./cmd/virtconsole/ >/dev/null
	@cat bench.json

# Issue 16's 10,000 idle consoles: the proxy's RSS, Go heap, goroutines and
# open files with VIRTCONSOLE_BENCH_IDLE_SESSIONS (10000) idle sessions
# open, each having carried bulk data, plain and TLS (a minute or two).
# Raises the open-file limit (as root, the hard one too): each session
# takes two files in the proxy and two in the test.
bench-idle: check-go
	mkdir -p $(BENCH_PROFILES)
	VIRTCONSOLE_BENCH_PROFILE=$(BENCH_PROFILES) $(GO) test -run XXX -bench '^BenchmarkIdleSessions$$' -benchtime 1x -timeout 20m ./cmd/virtconsole/

# The proxy's syscalls per message (strace -f -c on its process): a 32 KiB
# message up, one down and a 1-byte echo round trip, for the minimal
# gorilla proxy and virtconsole, plain and TLS. Needs strace (Debian:
# apt-get install strace) and ptrace rights over the proxies (root, or
# kernel.yama.ptrace_scope 0).
bench-syscalls: check-go
	mkdir -p $(BENCH_PROFILES)
	VIRTCONSOLE_BENCH_PROFILE=$(BENCH_PROFILES) $(GO) test -run XXX -bench '^BenchmarkSyscalls$$' -benchtime 1x -timeout 20m ./cmd/virtconsole/

# Scale-out figures (issue 17), against the real libvirtd and HAProxy:
# sessions per second through the balancer with 1 and 3 replicas, the
# single-use race window without it, and a replica's resolver against 1,
# 10 and 50 libvirtd instances (memory, connections, sync time). Like
# "make test" it reconfigures libvirtd. No race detector.
measure-scale: check-go
	VIRTCONSOLE_MEASURE_SCALE=1 $(GO) test -run '^TestMeasure' -v -count=1 -timeout 60m ./cmd/virtconsole/

# The soak test with faults (cmd/virtconsole/soak_test.go, TestSoak): the
# proxy holding SOAK_SESSIONS sessions (default 10000) for SOAK_MINUTES
# (default 3) while QEMU, the REST resolver and libvirtd are killed and
# restarted, a crowd and a flood misbehave; it prints a table of figures
# and fails on any byte lost or crossed, or a leak. Like "make test" it
# reconfigures libvirtd. The hard open-file limit (ulimit -Hn) bounds the
# sessions: two per session in the proxy. "make test" runs the same test
# briefly.
soak: check-go
	SOAK_MINUTES=$${SOAK_MINUTES:-3} $(GO) test -run '^TestSoak$$' -v -count=1 -timeout 3h ./cmd/virtconsole/

generate: check-go
	$(GO) generate ./...

demo: deps-demo build
	bash cmd/demo/serial-demo.sh

clean:
	rm -rf bin demo

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, the man pages
# and the bash, zsh and fish completions, where those shells look for them.
# The binary is stamped with the checkout's commit ("virtconsole
# --version") even when go env sets -buildvcs=false; GOFLAGS given to make
# (or in the environment) is used instead.
PREFIX  ?= /usr/local
DESTDIR ?=

.PHONY: install uninstall

install: export GOFLAGS ?= -buildvcs=auto
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/virtconsole
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -D -m 0644 completions/virtconsole.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/virtconsole
	install -D -m 0644 completions/_virtconsole $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_virtconsole
	install -D -m 0644 completions/virtconsole.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/virtconsole.fish

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/virtconsole
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/man/man1/,$(notdir $(wildcard man/*.1)))
	rm -f $(DESTDIR)$(PREFIX)/share/bash-completion/completions/virtconsole
	rm -f $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_virtconsole
	rm -f $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/virtconsole.fish

# virtconsole: `make demo` for a working serial console, `make test` for
# the whole suite. See README.md.
GO      ?= go
BIN     := bin/virtconsole
FUZZBUDGET ?= 50000x

.PHONY: all build test vet unit fuzz bench demo generate deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/virtconsole

deps:
	bash .ci/install-deps

# The whole suite: vet, every test with the race detector (end-to-end
# tests run real QEMU, libvirtd and the built binary), and each fuzzer
# briefly. -p 1: libvirt tests share (and restart) one libvirtd.
test: vet fuzz unit

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -p 1 -timeout 25m ./...

fuzz:
	@bash .ci/fuzz $(FUZZBUDGET)

# Throughput and allocations of the byte pump (tunnel), session setup
# time through the proxy with TLS on both legs and idle memory per session
# (cmd/virtconsole, real QEMU and the proxy binary), and the proxy binary's
# throughput, echo latency and CPU per GB against websockify's (skipped
# when websockify is not installed). No race detector.
bench:
	$(GO) test -run XXX -bench . -benchmem ./tunnel/...
	$(GO) test -run XXX -bench VNCSessionSetup -benchtime 200x ./cmd/virtconsole/
	$(GO) test -run XXX -bench IdleSessionMemory -benchtime 1x -count 3 ./cmd/virtconsole/
	$(GO) test -run XXX -bench ProxyThroughput -benchtime 3s -count 2 ./cmd/virtconsole/

generate:
	$(GO) generate ./...

demo: deps build
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

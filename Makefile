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

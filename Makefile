# volperm build, test and install targets.

GO       ?= go
PREFIX   ?= /usr/local
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/volperm/volperm/internal/cli.Version=$(VERSION)
FUZZTIME ?= 5s

.PHONY: build build-exec image test check fuzz install example bench-shift bench-exec

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/volperm ./cmd/volperm

# The container entrypoint alone (volperm exec), static and slim: no Docker
# client, compose or command tree in it.
build-exec:
	CGO_ENABLED=0 $(GO) build -trimpath -tags execonly -o build/volperm ./cmd/volperm

# A FROM scratch image carrying only that binary, for
# COPY --from=volperm:exec /volperm /usr/local/bin/volperm
image: build-exec
	docker build -t volperm:exec build

# The whole test suite against the real Docker daemon and real files: on a
# fresh machine (as root) it installs and starts what it needs first.
# With CI=true a test that needs root or Docker fails instead of skipping.
test:
	./scripts/test-host.sh
	$(MAKE) check
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz

check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# Every fuzz target, briefly; fails only on an input that fails its target
# when re-run (see the script for the fuzzer's spurious exits).
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# Installs volperm and the Docker CLI plugin docker-volperm (same binary).
install: build
	install -D -m 0755 bin/volperm $(DESTDIR)$(PREFIX)/bin/volperm
	install -d $(DESTDIR)$(PREFIX)/lib/docker/cli-plugins
	ln -sf $(PREFIX)/bin/volperm $(DESTDIR)$(PREFIX)/lib/docker/cli-plugins/docker-volperm

# The main job on the bundled seed-000 project; it exits 1 because it finds
# the problem the example reproduces.
example:
	-$(GO) run ./cmd/volperm doctor --project-dir examples/seed000

# Measured figures quoted in the README.
bench-shift:
	./scripts/bench-shift.sh

bench-exec:
	./scripts/bench-exec.sh

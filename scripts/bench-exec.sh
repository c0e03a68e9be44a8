#!/usr/bin/env bash
# Measures what volperm exec adds before a container's command runs, against
# no entrypoint and against the plain privilege drop of gosu/su-exec (a
# static program in scripts/benchexec), all in one container on the real
# daemon, and prints medians and ratios. Nothing needs re-owning, as on
# every start after the first.
#   scripts/bench-exec.sh [RUNS]
set -euo pipefail
runs=${1:-300}
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/volperm-bench-exec.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

CGO_ENABLED=0 go build -trimpath -tags execonly -o "$work/b/volperm" ./cmd/volperm
CGO_ENABLED=0 go build -trimpath -o "$work/b/volperm-full" ./cmd/volperm
CGO_ENABLED=0 go build -trimpath -o "$work/b/benchexec" ./scripts/benchexec

# A busybox image with a user, imported from a directory: no registry.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/home/node" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true id; do ln -s busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000:node:/home/node:/bin/sh\n' >"$work/rootfs/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\n' >"$work/rootfs/etc/group"
chown 1000:1000 "$work/rootfs/home/node"
tar -C "$work/rootfs" -c . | docker import - volperm-bench:1 >/dev/null

echo "volperm exec start-up, $runs runs each, in one container ($(nproc) CPUs, docker $(docker version --format '{{.Server.Version}}')):"
docker run --rm --network none -v "$work/b:/b:ro" volperm-bench:1 /b/benchexec loop -n "$runs" \
	"no entrypoint=/bin/true" \
	"gosu-style drop=/b/benchexec drop 1000 1000 /bin/true" \
	"volperm exec (slim)=/b/volperm exec --user node -- /bin/true" \
	"volperm exec (full binary)=/b/volperm-full exec --user node -- /bin/true" \
	| tee "$work/out"
awk '/gosu-style/ {g=$(NF-2)} /slim/ {v=$(NF-2)} END {
	gsub("ms","",g); gsub("ms","",v);
	printf "volperm exec (slim) against the gosu-style drop: %.2fx its time, %+.2fms\n", v/g, v-g }' "$work/out"
docker rmi -f volperm-bench:1 >/dev/null

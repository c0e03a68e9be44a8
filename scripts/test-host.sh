#!/usr/bin/env bash
# Prepares a Debian/Ubuntu machine to run volperm's tests for real: installs
# the Docker Engine and the tools the tests compare against, and starts
# dockerd when no daemon answers. Idempotent: it reuses what is there.
set -euo pipefail

pkgs=(docker.io acl busybox-static uidmap libcap2-bin make)
if [ "$(id -u)" != 0 ]; then
	echo "test-host: not root: skipping package installation and daemon start-up (tests that need them will skip, or fail under CI=true)" >&2
	exit 0
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "test-host: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! timeout 10 docker version >/dev/null 2>&1; then
	echo "test-host: no Docker daemon answers: starting dockerd" >&2
	log=/var/log/volperm-test-dockerd.log
	nohup dockerd >"$log" 2>&1 &
	for _ in $(seq 1 60); do
		timeout 5 docker version >/dev/null 2>&1 && break
		sleep 1
	done
	if ! timeout 10 docker version >/dev/null 2>&1; then
		echo "test-host: dockerd did not come up; last lines of $log:" >&2
		tail -n 30 "$log" >&2
		exit 1
	fi
fi
echo "test-host: docker $(docker version --format '{{.Server.Version}}') answers" >&2

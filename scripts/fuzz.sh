#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 5s).
#
# It fails when the fuzzer finds an input that fails the target, and only
# then: `go test -fuzz` also exits non-zero without a finding (the fuzztime
# deadline expiring while a worker is mid-input, a worker it judges hung on
# a loaded machine), and it can write such an input as a finding. So a
# non-zero exit is checked against the inputs it wrote: each is re-run as a
# plain test, and only one that fails there fails this script (or a target
# that does not build or start fuzzing). Every failure prints the output.
set -uo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-5s}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=0

for pkg in $($GO list ./...); do
	dir=$($GO list -f '{{.Dir}}' "$pkg")
	for t in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		corpus="$dir/testdata/fuzz/$t"
		before=$(ls "$corpus" 2>/dev/null | sort)
		echo "fuzz $pkg $t"
		if $GO test -run='^$' -fuzz="^$t\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
			continue
		fi
		after=$(ls "$corpus" 2>/dev/null | sort)
		found=$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d')
		if [ -z "$found" ] && ! grep -q '^fuzz: elapsed' "$log"; then
			echo "  FAIL: $t did not start fuzzing; output:"
			sed 's/^/  | /' "$log" | tail -n 40
			failed=1
			continue
		fi
		if [ -z "$found" ]; then
			echo "  the fuzzer exited non-zero without writing an input; its output:"
			sed 's/^/  | /' "$log" | tail -n 20
			echo "  (not a finding: counted as passed)"
			continue
		fi
		for f in $found; do
			if $GO test -count=1 -run="^$t/$f\$" "$pkg" >>"$log" 2>&1; then
				echo "  the fuzzer wrote $corpus/$f, but it passes when re-run; its output:"
				sed 's/^/  | /' "$log" | tail -n 20
				echo "  (not a finding: removed)"
				rm -f "$corpus/$f"
			else
				echo "  FAIL: input $corpus/$f fails $t; output:"
				sed 's/^/  | /' "$log" | tail -n 40
				failed=1
			fi
		done
	done
done
exit $failed

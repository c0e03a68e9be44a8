#!/usr/bin/env bash
# Measures volperm shift against chown -R and a stat-walk floor on identical
# generated trees, in the same run, and prints ratios (higher is better for
# volperm). Run as root on the filesystem to measure (ext4 by default here).
#   scripts/bench-shift.sh [ENTRIES] [DIR]        (ROUNDS=3 in the environment)
# Each figure is the median of its rounds; the rounds interleave the
# commands, every run starts after a sync (no writeback of the run before
# pending) with the page cache warm. Every shift changes every entry: the
# rounds shift the tree to the remapped ids and back.
set -euo pipefail
entries=${1:-1000000}
work=${2:-/var/tmp/volperm-bench}
rounds=${ROUNDS:-3}
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

rm -rf "$work"; mkdir -p "$work/bin"
CGO_ENABLED=0 go build -trimpath -o "$work/bin/volperm" ./cmd/volperm
go build -o "$work/bin/benchgen" ./scripts/benchgen
echo "generating two identical trees of about $entries entries in $work ..."
"$work/bin/benchgen" -root "$work/a" -entries "$entries" &
"$work/bin/benchgen" -root "$work/b" -entries "$entries"
wait
n=$(find "$work/b" | wc -l)
find "$work/a" "$work/b" -printf '' # warm the cache

secs() { # run a command, print its elapsed seconds; its peak RSS (KiB) goes to $work/rss
	sync
	/usr/bin/time -f '%e %M' -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
	read -r s rss <"$work/t"; echo "$rss" >"$work/rss"; echo "$s"
}
vp=("$work/bin/volperm" shift "$work/b" --progress never)
remapped=ranges:0:100000:65536
floor=() chown=() first=() rerun=() rss=0
for r in $(seq "$rounds"); do
	floor+=("$(secs find "$work/b" -printf '%U %G\n')")
	chown+=("$(secs chown -R 100000:100000 "$work/a")")
	first+=("$(secs "${vp[@]}" --journal "$work/journal-fwd" --from host --to $remapped)")
	rss=$(( $(cat "$work/rss") > rss ? $(cat "$work/rss") : rss ))
	rerun+=("$(secs "${vp[@]}" --journal "$work/journal-fwd" --from host --to $remapped)")
	chown+=("$(secs chown -R 0:0 "$work/a")")
	first+=("$(secs "${vp[@]}" --journal "$work/journal-back" --from $remapped --to host)")
	rss=$(( $(cat "$work/rss") > rss ? $(cat "$work/rss") : rss ))
	echo "round $r: floor ${floor[-1]}s, chown -R ${chown[-2]}s ${chown[-1]}s, shift ${first[-2]}s ${first[-1]}s, no-op rerun ${rerun[-1]}s"
done
chown_again=$(secs chown -R 0:0 "$work/a")

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) b = 0.001; printf "%.2f", a / b }'; }
floor=$(median "${floor[@]}") chown=$(median "${chown[@]}") first=$(median "${first[@]}") rerun=$(median "${rerun[@]}")
cat <<EOT
entries:                           $n ($(nproc) CPUs, $(df -T "$work" | awk 'NR==2 {print $2}')), medians of $rounds rounds
stat walk floor (find -printf):    ${floor}s
chown -R:                          ${chown}s
chown -R (rerun, already right):   ${chown_again}s
volperm shift (first):             ${first}s   peak RSS $((rss / 1024)) MiB
volperm shift (no-op rerun):       ${rerun}s
first shift vs chown -R:           $(ratio "$chown" "$first")x faster   (target >= 1.25)
no-op rerun vs chown -R:           $(ratio "$chown" "$rerun")x faster   (target >= 3)
no-op rerun / stat walk floor:     $(ratio "$rerun" "$floor")        (target <= 0.75)
EOT
rm -rf "$work"

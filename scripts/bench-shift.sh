#!/usr/bin/env bash
# Measures volperm shift against chown -R and a stat-walk floor on identical
# generated trees, in the same run, and prints ratios (higher is better for
# volperm). Run as root on the filesystem to measure (ext4 by default here).
#   scripts/bench-shift.sh [ENTRIES] [DIR]
set -euo pipefail
entries=${1:-1000000}
work=${2:-/var/tmp/volperm-bench}
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
sync

secs() { # run a command, print its elapsed seconds; RSS (KiB) to $work/rss
	/usr/bin/time -f '%e %M' -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
	read -r s rss <"$work/t"; echo "$rss" >"$work/rss"; echo "$s"
}
find "$work/a" "$work/b" -printf '' # warm the cache

floor=$(secs find "$work/b" -printf '%U %G\n')
chown=$(secs chown -R 100000:100000 "$work/a")
first=$(secs "$work/bin/volperm" shift "$work/b" --from host --to ranges:0:100000:65536 --progress never --journal "$work/j1")
first_rss=$(cat "$work/rss")
rerun=$(secs "$work/bin/volperm" shift "$work/b" --from host --to ranges:0:100000:65536 --progress never --journal "$work/j1")
rerun_rss=$(cat "$work/rss")
chown2=$(secs chown -R 100000:100000 "$work/a")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) b = 0.001; printf "%.2f", a / b }'; }
cat <<EOT
entries:                           $n ($(nproc) CPUs, $(df -T "$work" | awk 'NR==2 {print $2}'))
stat walk floor (find -printf):    ${floor}s
chown -R (first):                  ${chown}s
chown -R (rerun, already right):   ${chown2}s
volperm shift (first):             ${first}s   peak RSS $((first_rss / 1024)) MiB
volperm shift (no-op rerun):       ${rerun}s   peak RSS $((rerun_rss / 1024)) MiB
first shift vs chown -R:           $(ratio "$chown" "$first")x faster   (target >= 1.25)
no-op rerun vs chown -R:           $(ratio "$chown" "$rerun")x faster   (target >= 3)
no-op rerun / stat walk floor:     $(ratio "$rerun" "$floor")        (target <= 0.75)
EOT
rm -rf "$work"

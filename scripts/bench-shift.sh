#!/usr/bin/env bash
# Measures volperm shift against chown -R and a stat-walk floor on identical
# generated trees, in the same run, and prints ratios (higher is better for
# volperm). Run as root on the filesystem to measure (ext4 by default here).
#   scripts/bench-shift.sh [ENTRIES] [DIR]        (ROUNDS=3 in the environment)
# Each figure is the median of its rounds; the rounds interleave the
# commands, and every shift changes every entry (odd rounds shift the tree
# to the remapped ids, even rounds back). Every timed run starts warm and
# clean: sync (no writeback of the run before pending), then the caches
# dropped and the tree stat-walked once, so that all of its metadata
# (directory blocks, inode tables, dentries, inodes) was just read into
# memory. Warming once at the start is not enough where the kernel pages
# out page cache left idle for a while (DAMON "pageout" schemes do so
# after about a minute on some virtual machines): the metadata blocks of
# a tree would be read from disk again, at random, inside timed runs.
# It also prints CPU times: the first shift's and chown -R's, and that of
# scripts/threecalls, a one-thread walk making only the three calls per
# entry a correct shift cannot do without, which bounds what the CPUs of
# the machine allow.
set -euo pipefail
entries=${1:-1000000}
work=${2:-/var/tmp/volperm-bench}
rounds=${ROUNDS:-3}
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

rm -rf "$work"; mkdir -p "$work/bin"
CGO_ENABLED=0 go build -trimpath -o "$work/bin/volperm" ./cmd/volperm
go build -o "$work/bin/benchgen" ./scripts/benchgen
go build -o "$work/bin/threecalls" ./scripts/threecalls
echo "generating two identical trees of about $entries entries in $work ..."
"$work/bin/benchgen" -root "$work/a" -entries "$entries" &
"$work/bin/benchgen" -root "$work/b" -entries "$entries"
wait
n=$(find "$work/b" | wc -l)

secs() { # secs TREE CMD...: warm TREE, run CMD, print its elapsed seconds; its peak RSS (KiB) goes to $work/rss, its CPU seconds to $work/cpu
	sync
	echo 3 >/proc/sys/vm/drop_caches
	find "$1" -printf '%U %G\n' >/dev/null
	shift
	/usr/bin/time -f '%e %M %U %S' -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
	local s kib u k
	read -r s kib u k <"$work/t"; echo "$kib" >"$work/rss"; awk -v u="$u" -v k="$k" 'BEGIN { printf "%.2f", u + k }' >"$work/cpu"; echo "$s"
}
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) b = 0.001; printf "%.2f", a / b }'; }
vp=("$work/bin/volperm" shift "$work/b" --progress never)
remapped=ranges:0:100000:65536
floor=() chown=() first=() rerun=() chowncpu=() firstcpu=() threecpu=() paired=() rss=0
for r in $(seq "$rounds"); do
	if ((r % 2)); then owner=100000:100000 dir=(--from host --to $remapped); else owner=0:0 dir=(--from $remapped --to host); fi
	floor+=("$(secs "$work/b" find "$work/b" -printf '%U %G\n')")
	chown+=("$(secs "$work/a" chown -R "$owner" "$work/a")")
	chowncpu+=("$(cat "$work/cpu")")
	# The least a correct first shift must do, on one thread (see
	# scripts/threecalls), on the same tree: to a third owner, so that
	# every entry changes here and in the next round's chown -R.
	secs "$work/a" "$work/bin/threecalls" 50000:50000 "$work/a" >/dev/null
	threecpu+=("$(cat "$work/cpu")")
	first+=("$(secs "$work/b" "${vp[@]}" --journal "$work/journal" "${dir[@]}")")
	firstcpu+=("$(cat "$work/cpu")")
	rss=$(( $(cat "$work/rss") > rss ? $(cat "$work/rss") : rss ))
	rerun+=("$(secs "$work/b" "${vp[@]}" --journal "$work/journal" "${dir[@]}")")
	paired+=("$(ratio "${chown[-1]}" "${first[-1]}")")
	echo "round $r: floor ${floor[-1]}s, chown -R ${chown[-1]}s (CPU ${chowncpu[-1]}s), three calls CPU ${threecpu[-1]}s, shift ${first[-1]}s (CPU ${firstcpu[-1]}s), no-op rerun ${rerun[-1]}s"
done
chown_again=$(secs "$work/a" chown -R 50000:50000 "$work/a") # as threecalls left it

floor=$(median "${floor[@]}") chown=$(median "${chown[@]}") first=$(median "${first[@]}") rerun=$(median "${rerun[@]}")
chowncpu=$(median "${chowncpu[@]}") firstcpu=$(median "${firstcpu[@]}") threecpu=$(median "${threecpu[@]}")
cpuratio=$(ratio "$firstcpu" "$chowncpu")
cat <<EOT
entries:                           $n ($(nproc) CPUs, $(df -T "$work" | awk 'NR==2 {print $2}')), medians of $rounds rounds
stat walk floor (find -printf):    ${floor}s
chown -R:                          ${chown}s
chown -R (rerun, already right):   ${chown_again}s
volperm shift (first):             ${first}s   peak RSS $((rss / 1024)) MiB
volperm shift (no-op rerun):       ${rerun}s
first shift vs chown -R:           $(ratio "$chown" "$first")x faster   (target >= 1.25; the rounds' own ratios: median $(median "${paired[@]}"), $(printf '%s\n' "${paired[@]}" | sort -n | sed -n '1p;$p' | paste -sd- -))
no-op rerun vs chown -R:           $(ratio "$chown" "$rerun")x faster   (target >= 3)
no-op rerun / stat walk floor:     $(ratio "$rerun" "$floor")        (target <= 0.75)
CPU time, first shift / chown -R:  ${firstcpu}s / ${chowncpu}s = ${cpuratio}   (on $(nproc) CPUs the shift can be at most $(ratio "$(nproc)" "$cpuratio")x faster)
CPU time, stat+listxattr+chown
  per entry and nothing else / chown -R: ${threecpu}s / ${chowncpu}s = $(ratio "$threecpu" "$chowncpu")   (the least a correct shift can spend: $(nproc) CPUs allow at most $(ratio "$(nproc)" "$(ratio "$threecpu" "$chowncpu")")x)
EOT
rm -rf "$work"

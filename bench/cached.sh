#!/usr/bin/env bash
# Cached volumes: read hits against a stored volume on the same disk (the
# ratio should be >= 0.9), and a cold sequential read of a 256 MiB volume
# from a real local MinIO (started by the benchmark), in MB/s.
# Usage: bench/cached.sh [count]   (default 5 runs of each; medians)
set -euo pipefail
cd "$(dirname "$0")/.."
export MINIO_BIN="${MINIO_BIN:-$HOME/.cache/sluice-tools/bin/minio}"
count="${1:-5}"
hit=$(go test -run '^$' -bench 'BenchmarkReadHit' -benchtime 4000x -count "$count" ./blockcache/)
cold=$(go test -run '^$' -bench 'BenchmarkCachedColdSequentialMinIO' -benchtime 3x -count "$count" ./blockcache/)
printf '%s\n%s\n' "$hit" "$cold" | awk '
function median(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return a[int((n + 1) / 2)]
}
/^Benchmark.*MB\/s/ {
	name = $1; sub("-[0-9]+$", "", name)
	for (i = 1; i <= NF; i++) if ($i == "MB/s") mbs[name] = mbs[name] " " $(i-1)
}
END {
	print "| benchmark | MB/s (median of '"$count"') |"
	print "|---|---|"
	for (n in mbs) printf "| %s | %.0f |\n", n, median(mbs[n])
	print ""
	print "| read size | cached hit / stored (median of per-run ratios) |"
	print "|---|---|"
	for (n in mbs) if (n ~ /vol=cached$/) {
		s = n; sub("vol=cached", "vol=stored", s)
		nc = split(mbs[n], c, " "); ns = split(mbs[s], st, " "); r = ""
		for (i = 1; i <= nc && i <= ns; i++) r = r " " c[i] / st[i]
		sz = n; sub(".*size=", "", sz); sub("/.*", "", sz)
		printf "| %s | %.2f |\n", sz, median(r)
	}
}'

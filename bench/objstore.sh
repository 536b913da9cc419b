#!/usr/bin/env bash
# Object-store throughput through Sluice's production wrapper stack against a
# real local MinIO (started by the benchmark itself), as a Markdown table.
# Usage: bench/objstore.sh [benchtime]   (default 32x)
set -euo pipefail
cd "$(dirname "$0")/.."
export MINIO_BIN="${MINIO_BIN:-$HOME/.cache/sluice-tools/bin/minio}"
out=$(go test -run '^$' -bench 'MinIO' -benchtime "${1:-32x}" ./internal/objstore/)
echo "| operation | object size | parallel streams | MB/s |"
echo "|---|---|---|---|"
echo "$out" | awk '/^BenchmarkMinIO/ {
	split($1, p, "/"); op=p[2]; sub("size=", "", p[3]); sub("streams=", "", p[4]); sub("-[0-9]+$", "", p[4]);
	printf "| %s | %s | %s | %s |\n", op, p[3], p[4], $(NF-1)
}'

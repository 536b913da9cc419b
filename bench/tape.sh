#!/usr/bin/env bash
# bench/tape.sh — sequential tape write and read throughput of Sluice's
# virtual tape library over iSCSI on loopback, tapes stored in a real MinIO,
# beside tgt's SSC tape emulation (tgtadm --device-type tape) on a local
# file, driven by the same Go initiator (vtl BenchmarkTape).
#
# Workloads: 4 GiB (256 MiB with SHORT=1, or BYTES=n) written in 256 KiB and
# 1 MiB variable-length records, a filemark (Sluice's durability point),
# rewind, read back; through one drive and through 4 drives at once.
#
# Usage: bench/tape.sh            (SHORT=1 bench/tape.sh for a quick run)
# Needs: Go; MinIO from MINIO_BIN or ~/.cache/sluice-tools/bin/minio; tgt
# (installed with apt-get when missing; skipped if it cannot run).
# Ports: TGT_PORT (3264), TGT_CTL (7323).
set -euo pipefail

cd "$(dirname "$0")/.."
TGT_PORT=${TGT_PORT:-3264}
TGT_CTL=${TGT_CTL:-7323}
OUT=bench/out
IQN_TGT=iqn.2026-11.io.sluicegw:tgt-tape
mkdir -p "$OUT"

if [ -z "${MINIO_BIN:-}" ] && [ -x "$HOME/.cache/sluice-tools/bin/minio" ]; then
	export MINIO_BIN="$HOME/.cache/sluice-tools/bin/minio"
fi
ARGS=()
if [ "${SHORT:-0}" = 1 ]; then ARGS+=(-short); fi
if [ -n "${BYTES:-}" ]; then export VTL_BENCH_BYTES=$BYTES; fi
TOTAL=${BYTES:-$([ "${SHORT:-0}" = 1 ] && echo $((256 << 20)) || echo $((4 << 30)))}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need tgtd || ! need tgtimg; then
	echo "installing tgt..." >&2
	apt-get install -y tgt >/dev/null 2>&1 || true
fi

PIDS=()
TGT_UP=0
cleanup() {
	if [ "$TGT_UP" = 1 ]; then
		# tgtd ignores SIGTERM while it has targets: remove them first.
		tgtadm -C "$TGT_CTL" --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
		tgtadm -C "$TGT_CTL" --op delete --mode system >/dev/null 2>&1 || true
	fi
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -f "$OUT/tgt-tape.img"
}
trap cleanup EXIT

wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	return 1
}

if (exec 3<>"/dev/tcp/127.0.0.1/$TGT_PORT") 2>/dev/null; then
	echo "port $TGT_PORT is in use (a tgtd left over? tgtadm -C $TGT_CTL --op delete --mode system)" >&2
	exit 1
fi
if need tgtd && need tgtimg; then
	rm -f "$OUT/tgt-tape.img"
	# Tape of twice the workload (MB), so it never reaches end of medium.
	tgtimg --op new --device-type tape --barcode TGT0001 --size $((TOTAL * 2 / 1000000 + 64)) \
		--type data --file "$OUT/tgt-tape.img" >/dev/null
	tgtd -f -C "$TGT_CTL" --iscsi "portal=127.0.0.1:$TGT_PORT" >"$OUT/tgtd-tape.log" 2>&1 &
	PIDS+=($!)
	TGT_UP=1
	if wait_port "$TGT_PORT"; then
		tgtadm -C "$TGT_CTL" --lld iscsi --op new --mode target --tid 1 -T "$IQN_TGT"
		tgtadm -C "$TGT_CTL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 \
			--device-type tape -b "$OUT/tgt-tape.img"
		tgtadm -C "$TGT_CTL" --lld iscsi --op bind --mode target --tid 1 -I ALL
		export VTL_BENCH_TGT="127.0.0.1:$TGT_PORT,$IQN_TGT,1"
	else
		echo "tgtd did not start; running Sluice only" >&2
	fi
fi

go test -run '^$' -bench BenchmarkTape -benchtime 1x -timeout 60m "${ARGS[@]}" ./vtl/ |
	awk '/^Benchmark/ {
		name = $1; sub(/^BenchmarkTape\//, "", name); sub(/-[0-9]+$/, "", name)
		w = r = ""
		for (i = 1; i <= NF; i++) { if ($i == "writeMB/s") w = $(i-1); if ($i == "readMB/s") r = $(i-1) }
		printf "%-32s write %8s MB/s   read %8s MB/s\n", name, w, r
		next }
		{ print }'

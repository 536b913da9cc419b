#!/usr/bin/env bash
# bench/iscsi.sh — compare Sluice's iSCSI target with tgt (Linux SCSI target
# framework) on the same backing file, over loopback:
#
#   iscsi-perf 128 KiB sequential reads, QD32
#   iscsi-perf 4 KiB random reads, QD32
#   qemu-img bench -w 4 KiB and 128 KiB writes, QD32, over iscsi://
#
# and print MB/s, IOPS and the Sluice/tgt ratio per row.
#
# Usage: bench/iscsi.sh [seconds-per-run]   (default 10)
# Needs: tgt (installed with apt-get when missing), libiscsi-bin, qemu-utils
# with qemu-block-extra, Go. Ports: SLUICE_PORT (3261), TGT_PORT (3262).
set -euo pipefail

cd "$(dirname "$0")/.."
SECS=${1:-10}
SLUICE_PORT=${SLUICE_PORT:-3261}
TGT_PORT=${TGT_PORT:-3262}
TGT_CTL=${TGT_CTL:-7321}
OUT=bench/out
IMG=$OUT/iscsi-bench.img
SIZE=$((1 << 30))
IQN_SLUICE=iqn.2026-11.io.sluicegw:bench
IQN_TGT=iqn.2026-11.io.sluicegw:tgt
mkdir -p "$OUT"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need tgtd || ! need tgtadm; then
	echo "installing tgt..." >&2
	apt-get install -y tgt >/dev/null
fi
for t in iscsi-perf qemu-img go; do
	need "$t" || { echo "missing $t (apt-get install libiscsi-bin qemu-utils qemu-block-extra)" >&2; exit 1; }
done

# Backing file: allocated, filled with non-zero data so reads do real work.
if [ ! -f "$IMG" ] || [ "$(stat -c %s "$IMG")" != "$SIZE" ]; then
	echo "creating $IMG..." >&2
	head -c "$SIZE" /dev/urandom >"$IMG"
fi

PIDS=()
cleanup() {
	# tgtd does not always exit on SIGTERM: take it offline and shut it
	# down through its control port first.
	tgtadm -C "$TGT_CTL" --op update --mode sys --name State -v offline >/dev/null 2>&1 || true
	tgtadm -C "$TGT_CTL" --op delete --mode system --force >/dev/null 2>&1 || true
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 1
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "port $1 never opened" >&2
	exit 1
}

# Sluice.
go build -o "$OUT/iscsitarget" ./bench/iscsitarget
"$OUT/iscsitarget" -listen "127.0.0.1:$SLUICE_PORT" -file "$IMG" -size "$SIZE" \
	-target "$IQN_SLUICE" >"$OUT/sluice.log" 2>&1 &
PIDS+=($!)

# tgt, in the foreground on its own portal and control port.
tgtd -f -C "$TGT_CTL" --iscsi "portal=127.0.0.1:$TGT_PORT" >"$OUT/tgtd.log" 2>&1 &
PIDS+=($!)
wait_port "$SLUICE_PORT"
wait_port "$TGT_PORT"
tgtadm -C "$TGT_CTL" --lld iscsi --op new --mode target --tid 1 -T "$IQN_TGT"
tgtadm -C "$TGT_CTL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$IMG"
tgtadm -C "$TGT_CTL" --lld iscsi --op bind --mode target --tid 1 -I ALL

URL_SLUICE="iscsi://127.0.0.1:$SLUICE_PORT/$IQN_SLUICE/0"
URL_TGT="iscsi://127.0.0.1:$TGT_PORT/$IQN_TGT/1"

# perf URL ARGS... -> "MB/s IOPS" (average over the run)
perf() {
	local url=$1
	shift
	timeout -s INT "$SECS" iscsi-perf "$@" "$url" 2>&1 | tr '\r' '\n' |
		grep 'iops average' | tail -1 |
		sed -E 's/.*iops average ([0-9]+) \(([0-9]+) MB\/s\).*/\2 \1/'
}

# qbench URL SIZE COUNT -> "MB/s IOPS"
qbench() {
	local url=$1 size=$2 count=$3 secs
	secs=$(qemu-img bench -w -f raw -d 32 -s "$size" -c "$count" "$url" 2>&1 |
		sed -nE 's/Run completed in ([0-9.]+) seconds.*/\1/p')
	awk -v s="$secs" -v sz="$size" -v c="$count" \
		'BEGIN { if (s == "" || s == 0) { print "0 0"; exit } printf "%d %d\n", c*sz/s/1e6, c/s }'
}

row() {
	local name=$1 s=$2 t=$3
	read -r smb siops <<<"$s"
	read -r tmb tiops <<<"$t"
	awk -v n="$name" -v smb="$smb" -v si="$siops" -v tmb="$tmb" -v ti="$tiops" 'BEGIN {
		r = (ti > 0) ? si / ti : 0
		printf "%-34s %9d %9d %9d %9d %7.2f\n", n, smb, si, tmb, ti, r }'
}

printf "%-34s %9s %9s %9s %9s %7s\n" "workload (QD32)" "sluiceMB/s" "sluiceIOPS" "tgtMB/s" "tgtIOPS" "ratio"
row "iscsi-perf 128KiB seq read" "$(perf "$URL_SLUICE" -m 32 -b 256)" "$(perf "$URL_TGT" -m 32 -b 256)"
row "iscsi-perf 4KiB random read" "$(perf "$URL_SLUICE" -m 32 -b 8 -r)" "$(perf "$URL_TGT" -m 32 -b 8 -r)"
row "qemu-img bench -w 4KiB" "$(qbench "$URL_SLUICE" 4096 200000)" "$(qbench "$URL_TGT" 4096 200000)"
row "qemu-img bench -w 128KiB" "$(qbench "$URL_SLUICE" 131072 40000)" "$(qbench "$URL_TGT" 131072 40000)"

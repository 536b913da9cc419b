#!/usr/bin/env bash
# NFS file gateway throughput: Sluice (nfs package, backed by a local MinIO
# started here) against a peer NFS server on the same machine (nfs-ganesha
# with the VFS FSAL on a local directory; needs root, rpcbind and
# "apt-get install -y nfs-ganesha nfs-ganesha-vfs"; skipped when missing).
#
# Measures, with libnfs's nfs-cp (one client thread): write of a SIZE_MB file
# (until nfs-cp returns: data committed to Sluice's durable cache; and until
# the object is in MinIO), read of it back while cached (after the upload
# settled), and (Sluice) read after a restart with an empty cache (cache
# miss: ranged GETs from MinIO); then creation of FILES files of 4 KiB
# (CREATE+WRITE+COMMIT each) by nfs/internal/nfsbench with WORKERS parallel
# connections (rate as the client sees it, and until all are in MinIO).
# Each large-file copy is made REPEAT times (default 3) for both servers and
# the best counts: single copies varied by 2-3x from run to run on this VM,
# for either server.
# Usage: bench/nfs.sh            (SIZE_MB=1024 FILES=10000 WORKERS=16 REPEAT=3)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
FILES=${FILES:-10000}
WORKERS=${WORKERS:-16}
REPEAT=${REPEAT:-3} # large-file copies per measurement; the best counts
MINIO_BIN="${MINIO_BIN:-$(command -v minio || echo "$HOME/.cache/sluice-tools/bin/minio")}"
TMP=$(mktemp -d /var/tmp/sluice-nfsbench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
	rm -rf "${BACKDIR:-}"
}
trap cleanup EXIT
# Reads are copied to a file on tmpfs when there is room (READ_DIR
# overrides): on this VM, writing 1 GiB to the local disk right after
# MinIO or ganesha wrote 1 GiB held nfs-cp at ~350 MiB/s for any server
# (the kernel throttles the writer while dirty pages are flushed).
READ_DIR=${READ_DIR:-/dev/shm}
if [ "$(df -Pm "$READ_DIR" 2>/dev/null | awk 'NR == 2 { print $4 }')" -gt $((SIZE_MB * 2)) ] 2>/dev/null; then
	BACKDIR=$(mktemp -d "$READ_DIR/sluice-nfsbench.XXXXXX")
	BACK=$BACKDIR/back.bin # nfs-cp refuses to overwrite a file
else
	BACK=$TMP/back.bin
fi

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
mbps() { awk -v mb="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", mb / (b - a) }'; }
waitport() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

go build -o "$TMP/nfsbench" ./nfs/internal/nfsbench
head -c "${SIZE_MB}M" /dev/urandom > "$TMP/big.bin"

# --- MinIO and Sluice -------------------------------------------------------
export AWS_ACCESS_KEY_ID=sluicebench AWS_SECRET_ACCESS_KEY=sluicebench-secret
MPORT=$(freeport)
MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY MINIO_BROWSER=off \
	"$MINIO_BIN" server --quiet --address "127.0.0.1:$MPORT" --console-address "127.0.0.1:$(freeport)" "$TMP/minio" >"$TMP/minio.log" 2>&1 &
PIDS+=($!)
waitport "$MPORT"
sleep 1

start_sluice() { # $1: cache generation
	SPORT=$(freeport)
	mkdir -p "$TMP/sluice/state"
	rm -rf "$TMP/sluice/cache"
	"$TMP/nfsbench" serve -endpoint "http://127.0.0.1:$MPORT" -bucket bench -dir "$TMP/sluice" -listen "127.0.0.1:$SPORT" >"$TMP/sluice.$1.log" 2>&1 &
	SPID=$!
	PIDS+=($SPID)
	waitport "$SPORT"
}
stop_sluice() { kill -TERM "$SPID"; wait "$SPID" || true; }
uploads() { grep -c "^UPLOADED $1" "$TMP/sluice.$2.log" || true; }
wait_uploads() { # $1 path prefix, $2 count, $3 log generation
	while [ "$(uploads "$1" "$3")" -lt "$2" ]; do sleep 0.05; done
}

# cp_best copies $1 to $2 REPEAT times and prints the best MiB/s; a
# destination containing @ gets the repetition number there (nfs-cp does
# not overwrite), a local destination is removed after each copy (and
# compared with big.bin first). Dirty pages are flushed (sync) before each
# copy, so that neither server is timed while the kernel writes back what
# an earlier step (or MinIO) wrote.
cp_best() {
	local best=0 i dst t0 t1 r
	for i in $(seq "$REPEAT"); do
		dst=${2//@/$i}
		sync # no dirty pages of an earlier step flushed while timing
		t0=$(now); nfs-cp "$1" "$dst" >/dev/null; t1=$(now)
		r=$(mbps "$SIZE_MB" "$t0" "$t1")
		[ "$r" -gt "$best" ] && best=$r
		if [ "${dst#nfs:}" = "$dst" ]; then
			cmp -s "$TMP/big.bin" "$dst" || { echo "read back of $1 differs" >&2; exit 1; }
			rm -f "$dst"
		fi
	done
	echo "$best"
}

drv_read() { # $1 port, $2 depth, [$3 mount port, $4 export]
	"$TMP/nfsbench" readfile -addr "127.0.0.1:$1" -depth "$2" ${3:+-mountaddr 127.0.0.1:$3} ${4:+-export $4} | awk '/^READ/ { printf "%.0f", $4 }'
}

start_sluice 1
U="nfs://127.0.0.1/share/big.bin?nfsport=$SPORT&mountport=$SPORT"
sync
t0=$(now); nfs-cp "$TMP/big.bin" "$U" >/dev/null; t1=$(now)
wait_uploads big.bin 1 1; t2=$(now)
S_WRITE_S3=$(mbps "$SIZE_MB" "$t0" "$t2")
S_WRITE=$(mbps "$SIZE_MB" "$t0" "$t1")
if [ "$REPEAT" -gt 1 ]; then # more copies, to other names
	W=$(REPEAT=$((REPEAT - 1)) cp_best "$TMP/big.bin" "nfs://127.0.0.1/share/big@.bin?nfsport=$SPORT&mountport=$SPORT")
	[ "$W" -gt "$S_WRITE" ] && S_WRITE=$W
	wait_uploads big "$REPEAT" 1
fi
S_HIT=$(cp_best "$U" "$BACK")
S_HIT_D1=$(drv_read "$SPORT" 1)
S_HIT_D4=$(drv_read "$SPORT" 4)
stop_sluice # uploads what is left, then exits
start_sluice 2 # empty cache
U="nfs://127.0.0.1/share/big.bin?nfsport=$SPORT&mountport=$SPORT"
S_MISS=$(REPEAT=1 cp_best "$U" "$BACK") # a second copy would be a cache hit
stop_sluice
start_sluice 3 # empty cache again
S_MISS_D4=$(drv_read "$SPORT" 4)
t0=$(now)
S_FILES=$("$TMP/nfsbench" smallfiles -addr "127.0.0.1:$SPORT" -n "$FILES" -workers "$WORKERS" | awk '/^FILES/ { printf "%.0f", $4 }')
wait_uploads small/ "$FILES" 3; t1=$(now)
S_FILES_S3=$(awk -v n="$FILES" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
stop_sluice

# --- Peer: nfs-ganesha (VFS FSAL) -----------------------------------------------
P_WRITE=- P_HIT=- P_FILES=- P_HIT_D1=- P_HIT_D4=-
if command -v ganesha.nfsd >/dev/null && [ "$(id -u)" = 0 ]; then
	if ! (exec 3<>/dev/tcp/127.0.0.1/111) 2>/dev/null; then
		mkdir -p /run/rpcbind
		rpcbind -f -w >"$TMP/rpcbind.log" 2>&1 &
		PIDS+=($!)
		waitport 111
	fi
	GPORT=$(freeport) GMPORT=$(freeport)
	mkdir -p "$TMP/peer"
	cat >"$TMP/ganesha.conf" <<CONF
NFS_CORE_PARAM { NFS_Port = $GPORT; MNT_Port = $GMPORT; NLM_Port = $(freeport); Rquota_Port = $(freeport);
	Protocols = 3; Enable_NLM = false; Enable_RQUOTA = false; }
NFSV4 { Graceless = true; }
EXPORT { Export_Id = 1; Path = $TMP/peer; Pseudo = /share; Protocols = 3; Transports = TCP;
	Access_Type = RW; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; }
	CLIENT { Clients = *; Access_Type = RW; Squash = No_Root_Squash; } }
LOG { Default_Log_Level = WARN; }
CONF
	ganesha.nfsd -F -f "$TMP/ganesha.conf" -L "$TMP/ganesha.log" -p "$TMP/ganesha.pid" &
	PIDS+=($!)
	waitport "$GPORT"
	sleep 2
	U="nfs://127.0.0.1$TMP/peer/big.bin?nfsport=$GPORT&mountport=$GMPORT"
	P_WRITE=$(cp_best "$TMP/big.bin" "nfs://127.0.0.1$TMP/peer/big@.bin?nfsport=$GPORT&mountport=$GMPORT")
	t0=$(now); nfs-cp "$TMP/big.bin" "$U" >/dev/null; t1=$(now) # the file the reads read
	P_HIT=$(cp_best "$U" "$BACK")
	P_HIT_D1=$(drv_read "$GPORT" 1 "$GMPORT" "$TMP/peer")
	P_HIT_D4=$(drv_read "$GPORT" 4 "$GMPORT" "$TMP/peer")
	P_FILES=$("$TMP/nfsbench" smallfiles -addr "127.0.0.1:$GPORT" -mountaddr "127.0.0.1:$GMPORT" -export "$TMP/peer" \
		-n "$FILES" -workers "$WORKERS" | awk '/^FILES/ { printf "%.0f", $4 }')
else
	echo "peer (nfs-ganesha) not run: needs root and ganesha.nfsd" >&2
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
echo "| measurement | Sluice | peer (nfs-ganesha VFS) | Sluice/peer | goal |"
echo "|---|---:|---:|---:|---|"
echo "| nfs-cp write ${SIZE_MB} MiB (MiB/s) | $S_WRITE | $P_WRITE | $(ratio "$S_WRITE" "$P_WRITE") | >= 110 |"
echo "| same, until the object is in MinIO (MiB/s) | $S_WRITE_S3 | - | - | |"
echo "| nfs-cp read, cached (MiB/s) | $S_HIT | $P_HIT | $(ratio "$S_HIT" "$P_HIT") | >= 590 |"
echo "| driver read, cached, 1 READ in flight (MiB/s) | $S_HIT_D1 | $P_HIT_D1 | $(ratio "$S_HIT_D1" "$P_HIT_D1") | >= 590 |"
echo "| driver read, cached, 4 READs in flight (MiB/s) | $S_HIT_D4 | $P_HIT_D4 | $(ratio "$S_HIT_D4" "$P_HIT_D4") | >= 590 |"
echo "| nfs-cp read, cache miss from MinIO (MiB/s) | $S_MISS | - | - | >= 310 |"
echo "| driver read, cache miss, 4 READs in flight (MiB/s) | $S_MISS_D4 | - | - | >= 310 |"
echo "| create ${FILES} x 4 KiB files, ${WORKERS} connections (files/s) | $S_FILES | $P_FILES | $(ratio "$S_FILES" "$P_FILES") | >= 800, ratio >= 1 |"
echo "| same, until all objects are in MinIO (files/s) | $S_FILES_S3 | - | - | |"
echo "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"

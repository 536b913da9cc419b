#!/bin/bash
# qemu-btape.sh — acceptance run of the Sluice tape gateway (package vtl)
# against a real Linux kernel iSCSI initiator and real backup software.
#
# NOT part of the test suite (go test never runs it). Run it by hand, as
# root, on a Debian 12 (bookworm) amd64 machine with access to the Debian
# mirror:
#
#     sudo vtl/qemu-btape.sh            # from the repository root
#
# What it does:
#   1. installs debootstrap, qemu-system-x86 and e2fsprogs on the host;
#   2. builds sluiced and sluicectl from this checkout;
#   3. debootstraps a minimal bookworm guest (kernel, open-iscsi, lsscsi,
#      mtx, mt-st, sg3-utils, bacula-sd for btape and mtx-changer) into a
#      temporary directory, with /sbin/sluice-init as its init: a shell
#      script that logs in to the gateway, runs the checks and powers off;
#   4. starts sluiced on the host's loopback with the embedded object
#      store, creates four tapes;
#   5. boots the guest with qemu-system-x86_64 (software emulation, TCG,
#      unless ACCEL=kvm) on a serial console; the guest's only network is
#      QEMU user-mode networking, where 10.0.2.2 is the host and its
#      connections become connections to the host's 127.0.0.1, so the
#      guest reaches the gateway at 10.0.2.2:$ISCSI_PORT;
#   6. prints the guest's console (also kept in $WORK/console.log) and
#      the per-step summary.
#
# The guest runs, each under `timeout`:
#   iscsiadm discovery and login (media changer, drives 01 and 02),
#   lsscsi -g, sg_inq, mtx status, mtx load 1 0, mt status,
#   a tar round trip through /dev/nst0,
#   btape test  (Bacula's tape-drive qualification),
#   btape autochanger (through Bacula's mtx-changer script),
#   mtx unload, logout.
#
# Environment:
#   WORK=/tmp/dir    reuse a work directory (the debootstrapped guest in
#                    $WORK/root is kept and reused when $WORK/root/.done
#                    exists); default: a new mktemp directory under /tmp
#   ISCSI_PORT=3270  host port of the gateway's iSCSI listener
#   GUEST_TIMEOUT=3000  seconds before the guest is killed
#   MAX_BLOCK=...    Bacula Maximum Block Size (default: Bacula's default)
#   MIRROR=http://deb.debian.org/debian
#   ACCEL=tcg        QEMU accelerator (kvm where it works)
#   QUICK=1          skip the 1 MiB-block btape test on drive 2 (which
#                    moves 40 GB through the emulated guest: ~20 minutes
#                    under TCG)
#
# Needs Go on the host (to build the gateway). Nothing is written inside
# the repository: the binaries, the guest tree, its image, the gateway's
# data and the console log all stay in $WORK.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/sluice-qemu-btape.XXXXXX)}
ISCSI_PORT=${ISCSI_PORT:-3270}
CONTROL_PORT=${CONTROL_PORT:-8790}
NFS_PORT=${NFS_PORT:-2060}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-3000}
MAX_BLOCK=${MAX_BLOCK:-}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
QUICK=${QUICK:-0}
ROOT=$WORK/root
mkdir -p "$WORK"
echo "work directory: $WORK"

if [ "$(id -u)" != 0 ]; then
	echo "run as root (debootstrap needs it)" >&2
	exit 1
fi

# 1. host tools
if ! command -v debootstrap >/dev/null || ! command -v qemu-system-x86_64 >/dev/null ||
	! command -v mkfs.ext4 >/dev/null; then
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap qemu-system-x86 e2fsprogs
fi

# 2. the gateway
(cd "$REPO" && go build -o "$WORK/sluiced" ./cmd/sluiced && go build -o "$WORK/sluicectl" ./cmd/sluicectl)

# 3. the guest
if [ ! -e "$ROOT/.done" ]; then
	rm -rf "$ROOT"
	debootstrap --variant=minbase \
		--include=linux-image-amd64,kmod,open-iscsi,lsscsi,mtx,mt-st,sg3-utils,bacula-sd,iproute2,procps \
		bookworm "$ROOT" "$MIRROR"
	touch "$ROOT/.done"
fi

echo "InitiatorName=iqn.2026-11.io.sluicegw:qemu-guest" >"$ROOT/etc/iscsi/initiatorname.iscsi"

# Bacula storage daemon configuration for btape. CHANGER is replaced in
# the guest by the media changer's /dev/sgN once it is known.
{
	cat <<'EOF'
Storage {
  Name = guest-sd
  WorkingDirectory = /var/lib/bacula
  Pid Directory = /run/bacula
  SDPort = 9103
}
Director {
  Name = guest-dir
  Password = "unused"
}
Messages {
  Name = Standard
  console = all
}
Autochanger {
  Name = sluice
  Device = drive0
  Changer Device = CHANGER
  Changer Command = "/etc/bacula/scripts/mtx-changer %c %o %S %a %d"
}
Device {
  Name = drive0
  Media Type = LTO-5
  Device Type = Tape
  Archive Device = /dev/nst0
  AutoChanger = yes
  Drive Index = 0
  Changer Device = CHANGER
  Changer Command = "/etc/bacula/scripts/mtx-changer %c %o %S %a %d"
  AutomaticMount = yes
  AlwaysOpen = yes
  RemovableMedia = yes
  RandomAccess = no
EOF
	if [ -n "$MAX_BLOCK" ]; then
		echo "  Maximum Block Size = $MAX_BLOCK"
	fi
	echo "}"
} >"$ROOT/etc/bacula/btape-sluice.conf"
# Drive 2 (/dev/nst1) alone, with 1 MiB blocks.
cat >"$ROOT/etc/bacula/btape-sluice-1m.conf" <<'EOF'
Storage {
  Name = guest-sd
  WorkingDirectory = /var/lib/bacula
  Pid Directory = /run/bacula
  SDPort = 9103
}
Director {
  Name = guest-dir
  Password = "unused"
}
Messages {
  Name = Standard
  console = all
}
Device {
  Name = drive1
  Media Type = LTO-5
  Device Type = Tape
  Archive Device = /dev/nst1
  AutomaticMount = yes
  AlwaysOpen = yes
  RemovableMedia = yes
  RandomAccess = no
  Maximum Block Size = 1048576
}
EOF

# The guest's init: runs every step, prints "### STEP <name> rc=<n>" after
# each, then powers off. Never blocks: every command has a timeout.
cat >"$ROOT/sbin/sluice-init" <<EOF
#!/bin/bash
PORTAL=10.0.2.2:$ISCSI_PORT
QUICK=$QUICK
EOF
cat >>"$ROOT/sbin/sluice-init" <<'EOF'
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mkdir -p /dev/pts /run/lock /run/bacula /tmp
mount -t tmpfs tmpfs /run; mkdir -p /run/lock /run/bacula; chown bacula:tape /run/bacula 2>/dev/null
mount -t tmpfs tmpfs /tmp
exec </dev/null >/dev/console 2>&1

step() { # step NAME SECONDS cmd...
	local name=$1 secs=$2; shift 2
	echo "### BEGIN $name: $*"
	timeout -k 10 "$secs" "$@"
	local rc=$?
	echo
	echo "### STEP $name rc=$rc"
	return $rc
}

echo "### guest kernel: $(uname -r)"
echo "### open-iscsi: $(dpkg-query -W -f '${Version}' open-iscsi)  bacula-sd: $(dpkg-query -W -f '${Version}' bacula-sd)  mtx: $(dpkg-query -W -f '${Version}' mtx)  mt-st: $(dpkg-query -W -f '${Version}' mt-st)"

hostname sluice-guest
ip link set lo up
modprobe virtio_net
for m in iscsi_tcp sg st ch; do modprobe $m; done
# No udev: take the first interface that is not the loopback.
for _ in $(seq 30); do
	NIC=$(ip -o link show | awk -F': ' '$2 != "lo" {print $2; exit}')
	[ -n "$NIC" ] && break
	sleep 1
done
echo "### network interface: $NIC"
ip link set "$NIC" up
ip addr add 10.0.2.15/24 dev "$NIC"
ip route add default via 10.0.2.2

step iscsid 30 iscsid
sleep 2
step discovery 60 iscsiadm -m discovery -t sendtargets -p $PORTAL
# SendTargets answers the gateway's own listen address (127.0.0.1 seen
# from the host), which is not reachable from the guest: create the node
# records for the portal the guest can reach.
IQN=iqn.2026-11.io.sluicegw:sluice
for t in $IQN-mediachanger $IQN-tapedrive-01 $IQN-tapedrive-02; do
	iscsiadm -m node -o delete -T $t >/dev/null 2>&1
	iscsiadm -m node -o new -T $t -p $PORTAL >/dev/null
	step login-${t##*-} 60 iscsiadm -m node -T $t -p $PORTAL --login
done
sleep 5
step session 20 iscsiadm -m session -P 1
step lsscsi 20 lsscsi -g
CHANGER=$(lsscsi -g | awk '$2=="mediumx"{print $NF}')
DRIVE_SG=$(lsscsi -g | awk '$2=="tape"{print $NF; exit}')
echo "### changer=$CHANGER first drive sg=$DRIVE_SG"
step lsscsi-i 20 lsscsi -i
step sg_inq-changer 20 sg_inq $CHANGER
step sg_inq-drive 20 sg_inq $DRIVE_SG
step mtx-inquiry 20 mtx -f $CHANGER inquiry
step mtx-status 60 mtxs $CHANGER
step mtx-load 120 mtx -f $CHANGER load 1 0
step mtx-status-loaded 60 mtxs $CHANGER
step mt-status 60 mt -f /dev/nst0 status
step mt-setblk 30 mt -f /dev/nst0 setblk 0
step tar-write 300 tar -cf /dev/nst0 /etc
step mt-weof 60 mt -f /dev/nst0 weof
step mt-rewind 60 mt -f /dev/nst0 rewind
step tar-list 300 sh -c 'tar -tf /dev/nst0 | wc -l'
step tar-count 10 sh -c 'tar -cf - /etc 2>/dev/null | tar -tf - | wc -l'
step mt-status2 60 mt -f /dev/nst0 status
step mt-rewind2 60 mt -f /dev/nst0 rewind

sed -i "s#CHANGER#$CHANGER#" /etc/bacula/btape-sluice.conf
echo "### btape config:"; cat /etc/bacula/btape-sluice.conf
echo "### btape config (1 MiB blocks, drive 2):"; cat /etc/bacula/btape-sluice-1m.conf
# btape reads its commands, and the answers to its questions, from stdin:
# "test" ends by asking whether to run the autochanger test (y), which
# unloads the drive to slot 1, loads it again and writes on it.
step btape-test 2400 sh -c 'printf "test\ny\nquit\n" | btape -c /etc/bacula/btape-sluice.conf drive0'
step btape-autochanger 900 sh -c 'printf "autochanger\ny\nquit\n" | btape -c /etc/bacula/btape-sluice.conf drive0'
# The same test with 1 MiB blocks (the drive's READ BLOCK LIMITS maximum)
# on drive 2, without the autochanger: slot 2 loaded by hand.
if [ "$QUICK" != 1 ]; then
	step mtx-load-drive2 120 mtx -f $CHANGER load 2 1
	step btape-test-1MiB 2400 sh -c 'printf "test\nquit\n" | btape -c /etc/bacula/btape-sluice-1m.conf drive1'
	step mt-offline-drive2 120 mt -f /dev/nst1 offline
	step mtx-unload-drive2 120 mtx -f $CHANGER unload 2 1
fi
step mtx-status-end 60 mtxs $CHANGER
step mt-offline 120 mt -f /dev/nst0 offline
step mtx-unload 120 mtx -f $CHANGER unload 1 0
step mtx-status-final 60 mtxs $CHANGER
step logout 60 iscsiadm -m node --logoutall=all
echo "### GUEST DONE"
sync
echo o >/proc/sysrq-trigger
sleep 30
EOF
chmod 755 "$ROOT/sbin/sluice-init"

# mtx status without the 1,600 lines of empty storage slots (a command,
# not a shell function, so that timeout can run it).
cat >"$ROOT/usr/local/bin/mtxs" <<'EOF'
#!/bin/sh
mtx -f "$1" status >/tmp/mtx.out
rc=$?
grep -v 'Storage Element [0-9]*:Empty$' /tmp/mtx.out
exit $rc
EOF
chmod 755 "$ROOT/usr/local/bin/mtxs"

IMG=$WORK/guest.ext4
rm -f "$IMG"
mkfs.ext4 -q -F -L guest -d "$ROOT" "$IMG" 3G

# 4. the gateway on the host's loopback
DATA=$WORK/data
rm -rf "$DATA"
mkdir -p "$DATA"
"$WORK/sluiced" --data "$DATA" --iscsi-addr "127.0.0.1:$ISCSI_PORT" \
	--control-addr "127.0.0.1:$CONTROL_PORT" --nfs-addr "127.0.0.1:$NFS_PORT" \
	--portmap-addr off >"$WORK/sluiced.log" 2>&1 &
SLUICED=$!
trap 'kill $SLUICED 2>/dev/null; wait $SLUICED 2>/dev/null' EXIT
for _ in $(seq 150); do
	if ! kill -0 $SLUICED 2>/dev/null; then
		cat "$WORK/sluiced.log" >&2
		exit 1
	fi
	"$WORK/sluicectl" --data "$DATA" status >/dev/null 2>&1 && break
	sleep 0.2
done
"$WORK/sluicectl" --data "$DATA" tape create --barcode-prefix BTP --count 4 --size 100GiB
"$WORK/sluicectl" --data "$DATA" tape library

# 5. the guest
KERNEL=$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -1)
INITRD=$(ls "$ROOT"/boot/initrd.img-* | sort -V | tail -1)
# TCG (software emulation) by default: it works everywhere, including
# sandboxes whose /dev/kvm exists but does not run guests. ACCEL=kvm to
# use KVM where it works.
ACCEL=${ACCEL:-tcg}
timeout -k 10 "$GUEST_TIMEOUT" qemu-system-x86_64 \
	-machine q35,accel=$ACCEL -m 1024 -smp 1 -nographic -no-reboot \
	-kernel "$KERNEL" -initrd "$INITRD" \
	-append "root=/dev/vda rw console=ttyS0 init=/sbin/sluice-init panic=-1" \
	-drive file="$IMG",format=raw,if=virtio \
	-netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
	</dev/null 2>&1 | tee "$WORK/console.log" || true

# 6. summary
echo
echo "=== summary (from $WORK/console.log) ==="
grep -a -E '^### (STEP|guest|open-iscsi)' "$WORK/console.log" || echo "guest produced no results"
echo "--- btape verdicts ---"
grep -a -E '^### BEGIN btape|=== |This is correct|re-read correctly|Test succeeded|[Ff]ailed|ERR=|Error|worked|Congratulations|not correct' \
	"$WORK/console.log" || true

#!/usr/bin/env bash
# Package install test (part of `make test`): install target/debian/gatewatch_*.deb with apt into a
# clean Debian 12 root made by mmdebstrap, then, inside it (chroot, as the gatewatch user):
#   1. `gatewatch check` refuses the unedited config template, naming the keys to fill in;
#   2. `gatewatch models verify` passes on the installed models;
#   3. with the config edited and the broker down, `gatewatch run` on the rendered demo clip stores
#      its plate events in the outbox (undelivered);
#   4. the same package installed again keeps the edited conffile and the outbox;
#   5. with Mosquitto up on the host's loopback, `gatewatch run` delivers the stored events
#      (replayed) and the clip's plates again: a subscriber outside receives both sets;
#   6. purge says it removes the state, and does.
# The root (Debian 12 + the package's dependencies) is cached in .cache/install-root/ as a tarball
# keyed by the apt sources and the package list; `rm -rf .cache/install-root` rebuilds it.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=$(dpkg --print-architecture)
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
DEB=target/debian/gatewatch_${VERSION}_${ARCH}.deb
BIN=${GATEWATCH_BIN:-target/release/gatewatch}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
say() { echo "install-test: $*"; }
fail() { echo "install-test: FAILED: $*" >&2; exit 1; }
[ -f "$DEB" ] || fail "$DEB is missing (make deb)"
for tool in mmdebstrap zstd mosquitto_sub python3; do
  command -v "$tool" >/dev/null || fail "$tool is missing (make setup)"
done
python3 scripts/deb-copyright-check.py "$DEB" "$(uname -m)" || fail "the package's copyright file"
START=$(date +%s)

WORK=$(mktemp -d /tmp/gatewatch-install.XXXXXX)
ROOT=$WORK/root
cleanup() {
  local t0
  t0=$(date +%s)
  [ -n "${SUB_PID:-}" ] && kill "$SUB_PID" 2>/dev/null || true
  [ -n "${BROKER_PID:-}" ] && kill "$BROKER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  for m in "$ROOT/sys" "$ROOT/proc"; do
    if mountpoint -q "$m" 2>/dev/null; then $SUDO umount "$m" || $SUDO umount -l "$m" || true; fi
  done
  # Never delete through a mount that is still there.
  if grep -q " $ROOT/" /proc/mounts; then
    echo "install-test: $ROOT still has mounts; left in place" >&2
  else
    $SUDO rm -rf "$WORK"
  fi
  echo "install-test: cleanup took $(( $(date +%s) - t0 )) s"
}
trap cleanup EXIT

# --- the clean root, cached ---------------------------------------------------------------------
# The apt sources of this machine (Debian entries only), as one-line entries for mmdebstrap.
python3 scripts/apt-sources.py > "$WORK/sources.list"
[ -s "$WORK/sources.list" ] || fail "no Debian 12 (bookworm) apt source on this machine"
# What the package needs from the archive, from its Depends (versions dropped), plus
# ca-certificates (a TLS broker's trust) and what the test runs inside.
PKGS=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/[[:space:]]//g' \
  | grep -v '^$' | sort -u | paste -sd, -)
PKGS="$PKGS,ca-certificates"
KEY=$( (cat "$WORK/sources.list"; echo "$PKGS"; echo "variant=apt") | sha256sum | cut -c1-16)
CACHE=.cache/install-root
TARBALL=$CACHE/bookworm-$ARCH-$KEY.tar.zst
mkdir -p "$CACHE"
if [ -f "$TARBALL" ]; then
  say "clean Debian 12 root from the cache ($TARBALL)"
else
  say "building a clean Debian 12 root with mmdebstrap (cached as $TARBALL): $PKGS"
  T=$(date +%s)
  mapfile -t MIRRORS < "$WORK/sources.list"
  $SUDO mmdebstrap --quiet --variant=apt --include="$PKGS" bookworm "$WORK/root.tar.zst" "${MIRRORS[@]}"
  $SUDO chown "$(id -u):$(id -g)" "$WORK/root.tar.zst"
  rm -f "$CACHE"/bookworm-"$ARCH"-*.tar.zst
  mv "$WORK/root.tar.zst" "$TARBALL"
  say "root built in $(( $(date +%s) - T )) s"
fi
mkdir -p "$ROOT"
$SUDO tar --zstd -xpf "$TARBALL" -C "$ROOT"
# /dev comes with the root (mmdebstrap makes the usual nodes); /proc and /sys are mounted for
# ONNX Runtime's CPU discovery.
$SUDO mount -t proc proc "$ROOT/proc"
$SUDO mount -t sysfs -o ro sysfs "$ROOT/sys"
in_root() { $SUDO chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
as_gatewatch() { $SUDO chroot --userspec=gatewatch:gatewatch "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "$@"; }

# --- install -------------------------------------------------------------------------------------
$SUDO cp "$DEB" "$ROOT/tmp/gatewatch.deb"
say "apt install ./$(basename "$DEB")"
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/gatewatch.deb > "$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log"; fail "apt install"; }
in_root getent passwd gatewatch > /dev/null || fail "no gatewatch user"
[ "$(in_root stat -c '%U:%G %a' /etc/gatewatch/gatewatch.toml)" = "root:gatewatch 640" ] \
  || fail "conffile owner/mode: $(in_root stat -c '%U:%G %a' /etc/gatewatch/gatewatch.toml)"
[ "$(in_root stat -c '%U:%G %a' /var/lib/gatewatch)" = "gatewatch:gatewatch 750" ] \
  || fail "state dir owner/mode: $(in_root stat -c '%U:%G %a' /var/lib/gatewatch)"
say "installed: user gatewatch, /etc/gatewatch/gatewatch.toml root:gatewatch 640, /var/lib/gatewatch gatewatch:gatewatch 750"

# --- 1. the template is refused, clearly ---------------------------------------------------------
set +e
as_gatewatch gatewatch check --config /etc/gatewatch/gatewatch.toml > "$WORK/check.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] || { cat "$WORK/check.out"; fail "check on the unedited template exited $rc, not 2"; }
for key in site device mqtt.host "camera\[0\].url"; do
  grep -q "^  - $key:" "$WORK/check.out" || { cat "$WORK/check.out"; fail "check does not name $key"; }
done
say "gatewatch check on the unedited template: exit 2"
sed 's/^/    /' "$WORK/check.out"

# --- 2. models ----------------------------------------------------------------------------------
as_gatewatch gatewatch models verify > "$WORK/verify.out" 2>&1 || { cat "$WORK/verify.out"; fail "models verify"; }
say "gatewatch models verify: $(tail -1 "$WORK/verify.out") ($(grep -c '^ok ' "$WORK/verify.out") files ok)"

# --- 3. run with the broker down: events wait in the outbox ---------------------------------------
"$BIN" demo render --out "$WORK/clip.avi" > "$WORK/expected.jsonl"
$SUDO mkdir -p "$ROOT/srv/demo"
$SUDO cp "$WORK/clip.avi" "$ROOT/srv/demo/clip.avi"
$SUDO chmod 0644 "$ROOT/srv/demo/clip.avi"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The edit keeps the file (and so its owner and mode): the conffile is now modified.
$SUDO tee "$ROOT/etc/gatewatch/gatewatch.toml" > /dev/null <<CONF
# edited by the install test
site = "install"
device = "box1"
[mqtt]
host = "127.0.0.1"
transport = "tcp"
port = $PORT
[plates]
confirm_frames = 3
lost_after_s = 1.0
[[camera]]
id = "demo"
lane = "in-1"
url = "/srv/demo/clip.avi"
handoff = "every"
at_end = "stop"
CONF
as_gatewatch gatewatch check --config /etc/gatewatch/gatewatch.toml > "$WORK/check2.out" 2>&1 \
  || { cat "$WORK/check2.out"; fail "check on the edited config"; }
CONF_SUM=$(sha256sum < "$ROOT/etc/gatewatch/gatewatch.toml")
say "run 1 (broker down) on the demo clip"
as_gatewatch gatewatch --log-format json run --config /etc/gatewatch/gatewatch.toml > "$WORK/run1.log" 2>&1 \
  || { tail -30 "$WORK/run1.log"; fail "run 1"; }
WANT=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if "plate" in json.loads(l)))' "$WORK/expected.jsonl")
grep -q "\"undelivered\":$WANT[,}]" "$WORK/run1.log" || { tail -30 "$WORK/run1.log"; fail "run 1 did not leave $WANT undelivered events"; }
OUTBOX_SUM=$($SUDO find "$ROOT/var/lib/gatewatch/outbox" -type f -exec sha256sum {} + | sort | sha256sum)
say "run 1: $WANT plate events stored, undelivered"

# --- 4. the same package again: conffile and outbox survive --------------------------------------
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall /tmp/gatewatch.deb > "$WORK/reinstall.log" 2>&1 \
  || { cat "$WORK/reinstall.log"; fail "apt reinstall"; }
[ "$(sha256sum < "$ROOT/etc/gatewatch/gatewatch.toml")" = "$CONF_SUM" ] || fail "the edited conffile was replaced"
[ "$(in_root stat -c '%U:%G %a' /etc/gatewatch/gatewatch.toml)" = "root:gatewatch 640" ] || fail "conffile mode after upgrade"
[ "$($SUDO find "$ROOT/var/lib/gatewatch/outbox" -type f -exec sha256sum {} + | sort | sha256sum)" = "$OUTBOX_SUM" ] \
  || fail "the outbox changed across the reinstall"
say "reinstalled: edited conffile and outbox unchanged"

# --- 5. broker up: the stored events and the new ones arrive --------------------------------------
cat > "$WORK/mosquitto.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
CONF
/usr/sbin/mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
mosquitto_sub -h 127.0.0.1 -p "$PORT" -q 1 -v -t 'gatewatch/install/box1/events/#' > "$WORK/received.txt" &
SUB_PID=$!
sleep 0.5
say "run 2 (Mosquitto on 127.0.0.1:$PORT outside the root)"
as_gatewatch gatewatch --log-format json run --config /etc/gatewatch/gatewatch.toml > "$WORK/run2.log" 2>&1 \
  || { tail -30 "$WORK/run2.log"; fail "run 2"; }
grep -q "\"undelivered\":$WANT[,}]" "$WORK/run2.log" || { tail -30 "$WORK/run2.log"; fail "run 2 did not find the $WANT stored events"; }
sleep 1
kill "$SUB_PID" 2>/dev/null || true
python3 - "$WORK/received.txt" "$WORK/expected.jsonl" <<'EOF' || fail "events received"
import json, sys
want = sorted(json.loads(l)["plate"] for l in open(sys.argv[2]) if "plate" in json.loads(l))
got = [json.loads(l.split(" ", 1)[1]) for l in open(sys.argv[1]) if "/events/plate " in l]
replayed = sorted(e["plate"] for e in got if e.get("replayed"))
fresh = sorted(e["plate"] for e in got if not e.get("replayed"))
seqs = sorted(e["seq"] for e in got)
print(f"install-test: subscriber received {len(got)} plate events: {len(replayed)} replayed from the outbox {replayed}, {len(fresh)} new {fresh}")
ok = replayed == want and fresh == want and seqs == list(range(1, 2 * len(want) + 1))
if not ok:
    print(f"install-test: expected the demo's plates {want} twice, seqs 1..{2 * len(want)}; seqs {seqs}", file=sys.stderr)
sys.exit(0 if ok else 1)
EOF

# --- 6. purge ------------------------------------------------------------------------------------
in_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q gatewatch > "$WORK/purge.log" 2>&1 \
  || { cat "$WORK/purge.log"; fail "purge"; }
grep -q "purge removes /var/lib/gatewatch" "$WORK/purge.log" || { cat "$WORK/purge.log"; fail "purge did not say it removes the state"; }
[ ! -e "$ROOT/var/lib/gatewatch" ] || fail "purge left /var/lib/gatewatch"
! in_root getent passwd gatewatch > /dev/null || fail "purge left the gatewatch user"
say "purge: said so, removed /var/lib/gatewatch and the gatewatch user"
say "passed in $(( $(date +%s) - START )) s (before cleanup)"

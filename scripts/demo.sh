#!/usr/bin/env bash
# End-to-end demo: render the embedded demo clip, start a local Mosquitto on a free loopback port,
# run gatewatch on the clip until it ends, and print what an MQTT subscriber received.
# Before the run it enrols one face (from a crop of scikit-image's astronaut photo) into the box's
# gallery with `gatewatch face enrol`; the clip shows that driver and one who is not enrolled.
# Exit 0 only if every plate and every QR code of the clip arrived exactly once with the right text,
# and every face exactly once with the right identity (null for the driver not enrolled).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GATEWATCH_BIN:-target/release/gatewatch}
WORK=$(mktemp -d /tmp/gatewatch-demo.XXXXXX)
cleanup() {
  [ -n "${SUB_PID:-}" ] && kill "$SUB_PID" 2>/dev/null || true
  [ -n "${BROKER_PID:-}" ] && kill "$BROKER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$BIN" demo render --out "$WORK/clip.avi" --enrol "$WORK/enrol" > "$WORK/expected.jsonl"

PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/mosquitto.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
CONF
/usr/sbin/mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 50); do
  if (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done

mosquitto_sub -h 127.0.0.1 -p "$PORT" -q 1 -v -t 'gatewatch/#' > "$WORK/received.txt" &
SUB_PID=$!
sleep 0.3

cat > "$WORK/gatewatch.toml" <<CONF
site = "demo"
device = "lane1"
state_dir = "$WORK/state"
[mqtt]
host = "127.0.0.1"
transport = "tcp"
port = $PORT
[plates]
confirm_frames = 3
lost_after_s = 1.0
[[camera]]
id = "demo-cam"
lane = "in-1"
url = "$WORK/clip.avi"
handoff = "every"
at_end = "stop"
[camera.qr]
scan_fps = 5
[camera.face]
scan_fps = 5
CONF

for picture in "$WORK"/enrol/*.png; do
  "$BIN" face enrol --config "$WORK/gatewatch.toml" --id "$(basename "$picture" .png)" "$picture"
done

echo "demo: broker on 127.0.0.1:$PORT, running gatewatch on the rendered clip (work dir $WORK)"
"$BIN" run --config "$WORK/gatewatch.toml"
sleep 0.5
kill "$SUB_PID" 2>/dev/null || true

echo "demo: events received by the subscriber:"
grep ' {' "$WORK/received.txt" | grep '/events/' | cut -d' ' -f2- || true
/usr/bin/python3 - "$WORK/received.txt" "$WORK/expected.jsonl" <<'PY'
import json, sys
from collections import Counter
lines = [l.split(" ", 1) for l in open(sys.argv[1], encoding="utf-8") if " " in l]
expected = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
ok = True
for kind, key in (("plate", "plate"), ("qr", "text"), ("face", "identity")):
    events = [json.loads(p) for t, p in lines if f"/events/{kind}" in t]
    # Compared as multisets: two faces not enrolled would both say null.
    want = Counter(json.dumps(e[kind], ensure_ascii=False) for e in expected if kind in e)
    got = Counter(json.dumps(e[key], ensure_ascii=False) for e in events)
    hits = sum(min(n, got[k]) for k, n in want.items())
    extra = list((got - want).elements())
    print(f"demo: {len(events)} {kind} events received, {hits}/{sum(want.values())} as shown, {len(extra)} unexpected: {extra}")
    ok = ok and got == want
sys.exit(0 if ok else 1)
PY

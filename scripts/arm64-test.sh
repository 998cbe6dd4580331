#!/usr/bin/env bash
# The arm64 package, run on this x86-64 machine under qemu-user with the arm64 sysroot's libraries
# (`make arm64-test`, part of `make test`). From the unpacked target/debian/gatewatch_*_arm64.deb:
#   1. the binary is an AArch64 executable and `gatewatch --version` matches the amd64 build;
#   2. `gatewatch models verify` passes on the package's models and aarch64 ONNX Runtime, and
#      fails, naming the architecture, when pointed at the x86-64 runtime;
#   3. `gatewatch check` refuses the package's unedited config template, naming the keys;
#   4. `gatewatch eval plates` on plates the amd64 build renders (`demo plates`) reads the same
#      plates as the amd64 build: the same summary counts and the same per-image misreads.
#   5. the fetch step's model converters, run by the sysroot's arm64 Python with the pinned
#      packages' aarch64 wheels, write the bytes the manifest pins (a `make setup` on an arm64
#      machine converts the models itself).
# The emulated time is printed as a sanity figure only (emulation is over 100x slower than a box).
set -euo pipefail
cd "$(dirname "$0")/.."

SYSROOT=$PWD/.cache/arm64-sysroot
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
DEB=target/debian/gatewatch_${VERSION}_arm64.deb
HOST_BIN=target/release/gatewatch
# Few plates of each kind: each takes about a minute of emulated inference.
COUNT=${GATEWATCH_ARM64_PLATES:-2}
say() { echo "arm64-test: $*"; }
fail() { echo "arm64-test: FAILED: $*" >&2; exit 1; }

[ -f "$DEB" ] || fail "$DEB is missing (make deb-arm64)"
[ -x "$HOST_BIN" ] || fail "$HOST_BIN is missing (make build)"
[ -d "$SYSROOT" ] || fail "$SYSROOT is missing (scripts/cross-arm64.sh)"
command -v qemu-aarch64-static >/dev/null || fail "qemu-aarch64-static is missing (make setup)"
python3 scripts/deb-copyright-check.py "$DEB" aarch64 || fail "the package's copyright file"

WORK=$(mktemp -d /tmp/gatewatch-arm64.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
dpkg-deb -x "$DEB" "$WORK/pkg"
P=$WORK/pkg
# qemu-user runs the arm64 loader and libraries from the sysroot (-L); gatewatch finds the
# package's runtime and models through the variables a relocated install would set. The emulated
# CPU is a Cortex-A76 (as in RK3588 boxes): under qemu's default `max` CPU ONNX Runtime picks its
# SVE kernels, whose emulation is over 5x slower (one plate photo: over 6 minutes against 61 s).
QEMU=(qemu-aarch64-static -cpu cortex-a76 -L "$SYSROOT" "$P/usr/bin/gatewatch")
MODELS=$P/usr/share/gatewatch/models
GW=(env GATEWATCH_ORT_LIB="$P/usr/lib/gatewatch/libonnxruntime.so" GATEWATCH_MODEL_DIR="$MODELS" "${QEMU[@]}")

# 1. An arm64 binary that runs.
readelf -h "$P/usr/bin/gatewatch" | grep -q 'Machine:.*AArch64' || fail "the packaged binary is not AArch64"
got=$("${GW[@]}" --version)
want=$("$HOST_BIN" --version)
[ "$got" = "$want" ] || fail "--version: arm64 says '$got', amd64 says '$want'"
say "$got (AArch64, under $(qemu-aarch64-static --version | head -1))"

# 2. The package's models and runtime.
"${GW[@]}" models verify > "$WORK/verify.out" || { cat "$WORK/verify.out"; fail "models verify"; }
grep -q "libonnxruntime.so.* (aarch64)" "$WORK/verify.out" || { cat "$WORK/verify.out"; fail "models verify did not check the aarch64 runtime"; }
say "models verify: $(tail -1 "$WORK/verify.out")"
if env GATEWATCH_ORT_LIB="$PWD/.cache/onnxruntime/libonnxruntime.so" GATEWATCH_MODEL_DIR="$MODELS" \
  "${QEMU[@]}" models verify > "$WORK/verify-x86.out"; then
  fail "models verify accepted the x86-64 ONNX Runtime"
fi
grep -q "is ONNX Runtime for x86_64, but this gatewatch is built for aarch64" "$WORK/verify-x86.out" \
  || { cat "$WORK/verify-x86.out"; fail "models verify did not name the wrong architecture"; }
say "models verify refuses the x86-64 runtime, naming it"

# 3. The config template.
if "${GW[@]}" check --config "$P/etc/gatewatch/gatewatch.toml" > "$WORK/check.out" 2>&1; then
  fail "check accepted the unedited template"
fi
for k in site device mqtt.host 'camera\[0\].lane' 'camera\[0\].url'; do
  grep -q "  - $k:" "$WORK/check.out" || { cat "$WORK/check.out"; fail "check did not name $k"; }
done
say "check refuses the template: $(head -1 "$WORK/check.out")"

# 4. The same plates as the amd64 build, per kind (a label file names its own image).
for kind in cn vn; do
  D=$WORK/plates-$kind
  "$HOST_BIN" demo plates --kind "$kind" --count "$COUNT" --seed 7 --out "$D" >/dev/null
  T=$(date +%s)
  for arch in amd64 arm64; do
    if [ $arch = amd64 ]; then RUN=("$HOST_BIN"); else RUN=("${GW[@]}"); T=$(date +%s); fi
    "${RUN[@]}" eval plates --dataset "$D" --errors "$WORK/errors-$kind-$arch.jsonl" \
      > "$WORK/$kind-$arch.out" 2> "$WORK/$kind-$arch.err" \
      || { tail -5 "$WORK/$kind-$arch.err"; fail "eval plates of the $arch build ($kind plates)"; }
    tail -1 "$WORK/$kind-$arch.out" > "$WORK/$kind-$arch.json"
  done
  say "$kind: eval plates under qemu took $(( $(date +%s) - T )) s (emulated; a sanity figure only)"
  say "$kind amd64: $(cat "$WORK/$kind-amd64.json")"
  say "$kind arm64: $(cat "$WORK/$kind-arm64.json")"
  python3 - "$WORK" "$kind" <<'EOF' || fail "$kind: the arm64 build reads differently from the amd64 build"
import json, sys
work, kind = sys.argv[1], sys.argv[2]
a, b = (json.load(open(f"{work}/{kind}-{arch}.json")) for arch in ("amd64", "arm64"))
keys = ["images", "plates", "exact_match", "wrong", "wrong_elsewhere", "duplicates",
        "best_read_match", "detected", "no_read"]
diff = {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}
if diff:
    sys.exit(f"summary differs (amd64, arm64): {diff}")
if a["images"] == 0 or a["exact_match"] == 0:
    sys.exit("the amd64 build read nothing: the comparison would prove nothing")
def reads(path):
    # Each image the build did not read perfectly, with what it read (scores left out: the two
    # architectures' float kernels may differ in the last digits).
    out = {}
    for line in open(path):
        r = json.loads(line)
        out[r["image"]] = (sorted(x["plate"] for x in r["reads"]), sorted(r["wrong"]))
    return out
ra, rb = (reads(f"{work}/errors-{kind}-{arch}.jsonl") for arch in ("amd64", "arm64"))
if ra != rb:
    sys.exit(f"misreads differ: amd64 {ra}, arm64 {rb}")
print(f"arm64-test: {kind}: same reads: {a['plates']} plates, exact_match {b['exact_match']}, wrong {b['wrong']}")
EOF
done

# 5. The converters under arm64 Python. The pinned packages' aarch64 wheels (sha256-checked by pip
# against scripts/convert-requirements.txt) are unpacked once into .cache/convert-aarch64/.
REQ=scripts/convert-requirements.txt
SITE=.cache/convert-aarch64
STAMP=$(sha256sum "$REQ" | cut -c1-16)
if [ "$(cat "$SITE/stamp" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf "$SITE" && mkdir -p "$SITE/wheels" "$SITE/site"
  .cache/convert-venv/bin/python -m pip download --disable-pip-version-check -q --no-deps \
    --require-hashes --only-binary=:all: --implementation cp --python-version 3.11 \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 \
    --platform manylinux_2_26_aarch64 --platform manylinux2014_aarch64 \
    -r "$REQ" -d "$SITE/wheels" || fail "pip download of the converters' aarch64 wheels"
  for w in "$SITE"/wheels/*.whl; do python3 -m zipfile -e "$w" "$SITE/site"; done
  echo "$STAMP" > "$SITE/stamp"
fi
[ -x "$SYSROOT/usr/bin/python3.11" ] || fail "the sysroot has no arm64 Python (scripts/cross-arm64.sh)"
T=$(date +%s)
# -L maps /usr to the sysroot's, so PYTHONHOME=/usr is the arm64 standard library.
python3 scripts/fetch-models.py --reconvert-with "env PYTHONPATH=$PWD/$SITE/site PYTHONHOME=/usr \
  qemu-aarch64-static -cpu cortex-a76 -L $SYSROOT $SYSROOT/usr/bin/python3.11" \
  || fail "the model converters under arm64 Python"
say "converters under arm64 Python: the pinned bytes ($(( $(date +%s) - T )) s emulated)"
say "passed"

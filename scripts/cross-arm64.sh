#!/usr/bin/env bash
# Cross-builds gatewatch for arm64 (aarch64) gate boxes on this x86-64 Debian 12 machine, without
# touching the host's own (amd64) OpenCV or its dpkg architectures (docs/packaging.md, "arm64"):
#
#   1. an arm64 sysroot in .cache/arm64-sysroot/: Debian's arm64 OpenCV development packages and
#      their dependencies, unpacked by mmdebstrap (variant extract: nothing is run, nothing is
#      installed on the host), cached until the package list or this recipe changes;
#   2. `cargo build --target aarch64-unknown-linux-gnu` with Debian's cross compilers
#      (crossbuild-essential-arm64), the opencv crate pointed at the sysroot's headers and
#      libraries, and the linker at the sysroot;
#   3. the aarch64 ONNX Runtime pinned in models/manifest.toml, into .cache/onnxruntime-aarch64/.
#
# Output: target/aarch64-unknown-linux-gnu/release/gatewatch. `make deb-arm64` packages it and
# `make arm64-test` runs it under qemu-user (scripts/arm64-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
SYSROOT=$PWD/.cache/arm64-sysroot
MULTIARCH=aarch64-linux-gnu
say() { echo "cross-arm64: $*"; }
fail() { echo "cross-arm64: error: $*" >&2; exit 1; }

for tool in aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ qemu-aarch64-static mmdebstrap dpkg-deb rustup cargo; do
  command -v "$tool" >/dev/null || fail "$tool is missing; run make setup"
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# --- 1. the arm64 sysroot -----------------------------------------------------------------------
# The four OpenCV modules gatewatch links (imgproc, imgcodecs, videoio, core), not libopencv-dev,
# which would pull every module and VTK; libc and libstdc++ for the linker.
# Python is there for the arm64 test only: it runs the fetch step's model converters as an arm64
# machine would (scripts/arm64-test.sh); the package does not depend on it.
PKGS=libopencv-core-dev,libopencv-imgproc-dev,libopencv-imgcodecs-dev,libopencv-videoio-dev,libc6-dev,libstdc++-12-dev,python3.11-minimal,libpython3.11-stdlib
RECIPE=3 # bump when the fix-ups below change
SOURCES=$(python3 scripts/apt-sources.py)
[ -n "$SOURCES" ] || fail "no Debian 12 (bookworm) apt source on this machine"
KEY=$(printf '%s\n%s\n%s\n' "$SOURCES" "$PKGS" "$RECIPE" | sha256sum | cut -c1-16)
if [ "$(cat "$SYSROOT/.gatewatch-sysroot" 2>/dev/null)" = "$KEY" ]; then
  say "arm64 sysroot from the cache ($SYSROOT)"
else
  say "unpacking an arm64 sysroot with mmdebstrap into $SYSROOT: $PKGS"
  T=$(date +%s)
  NEW=$SYSROOT.new
  $SUDO rm -rf "$NEW" "$SYSROOT"
  mapfile -t MIRRORS <<< "$SOURCES"
  # The downloaded packages are kept (cleanup/apt/cache skipped): their shlibs files give the
  # arm64 package its dependencies (scripts/build-deb.sh), as dpkg-shlibdeps would.
  $SUDO mmdebstrap --quiet --variant=extract --arch=arm64 --skip=cleanup/apt/cache \
    --include="$PKGS" bookworm "$NEW" "${MIRRORS[@]}"
  $SUDO chown -R "$(id -u):$(id -g)" "$NEW"
  # What maintainer scripts would have done, and what a sysroot needs:
  # - BLAS and LAPACK are reached through update-alternatives links (not in the packages);
  ln -sfn blas/libblas.so.3 "$NEW/usr/lib/$MULTIARCH/libblas.so.3"
  ln -sfn lapack/liblapack.so.3 "$NEW/usr/lib/$MULTIARCH/liblapack.so.3"
  # - absolute symlinks (libz.so -> /lib/...) would point into the host: make them relative;
  find "$NEW" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
    dest=$(readlink "$link")
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$NEW$dest")" "$link"
  done
  # - each package's shlibs file, for the package's Depends;
  mkdir -p "$NEW/var/lib/gatewatch-shlibs"
  for deb in "$NEW"/var/cache/apt/archives/*.deb; do
    name=$(dpkg-deb -f "$deb" Package)
    ctl=$(mktemp -d)
    dpkg-deb --control "$deb" "$ctl"
    [ -f "$ctl/shlibs" ] && cp "$ctl/shlibs" "$NEW/var/lib/gatewatch-shlibs/$name.shlibs"
    rm -rf "$ctl"
  done
  rm -f "$NEW"/var/cache/apt/archives/*.deb
  # - ONNX Runtime's CPU discovery (pytorch cpuinfo) parses /proc/cpuinfo, and qemu-user 7.2
  #   shows the x86 host's, on which it dereferences a null pointer. qemu-user opens absolute
  #   paths under its -L prefix first, so the sysroot holds an arm64 one (two Cortex-A76 cores,
  #   as on an RK3588 box). Only the emulated test run sees it.
  mkdir -p "$NEW/proc"
  for i in 0 1; do
    printf 'processor\t: %s\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n' "$i"
  done > "$NEW/proc/cpuinfo"
  echo "$KEY" > "$NEW/.gatewatch-sysroot"
  mv "$NEW" "$SYSROOT"
  say "sysroot ready in $(( $(date +%s) - T )) s ($(du -sh "$SYSROOT" | cut -f1))"
fi

# --- 2. the cross build -------------------------------------------------------------------------
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
LIBDIR=$SYSROOT/usr/lib/$MULTIARCH
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# The linker resolves libc's linker scripts and OpenCV's own dependencies inside the sysroot.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=--sysroot=$SYSROOT"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# The opencv crate: no pkg-config (opencv4.pc comes only with libopencv-dev); its binding
# generator parses the sysroot's headers, and the binary links the same four modules as on amd64.
export OPENCV_LINK_LIBS=opencv_videoio,opencv_imgcodecs,opencv_imgproc,opencv_core
export OPENCV_LINK_PATHS=$LIBDIR
export OPENCV_INCLUDE_PATHS=$SYSROOT/usr/include/opencv4,$SYSROOT/usr/include/$MULTIARCH/opencv4
export PKG_CONFIG_ALLOW_CROSS=1
T=$(date +%s)
say "cargo build --release --locked --target $TARGET"
cargo build --release --locked --target "$TARGET" --bin gatewatch
say "built target/$TARGET/release/gatewatch in $(( $(date +%s) - T )) s"

# --- 3. the aarch64 ONNX Runtime ----------------------------------------------------------------
python3 scripts/fetch-models.py --arch aarch64

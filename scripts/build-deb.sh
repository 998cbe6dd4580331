#!/usr/bin/env bash
# Builds target/debian/gatewatch_<version>_<arch>.deb from the release build with dpkg-deb (the
# layout and the reasons are in docs/packaging.md). Used by `make deb`, which builds first.
#
#   /usr/bin/gatewatch                            the binary (debug info stripped)
#   /usr/lib/gatewatch/libonnxruntime.so*         ONNX Runtime, sha256-checked against the manifest
#   /usr/share/gatewatch/models/                  the default model set + manifest.toml, checked
#   /etc/gatewatch/gatewatch.toml                 conffile: the example with the required values
#                                                 emptied (root:gatewatch 0640, set by postinst)
#   /lib/systemd/system/gatewatch.service         the unit
#   /usr/share/doc/gatewatch/                     README, example config, copyright, changelogs
#   /var/lib/gatewatch                            made by postinst (0750 gatewatch:gatewatch)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
# DEB_ARCH=arm64 on an amd64 machine packages the cross build of scripts/cross-arm64.sh: its
# binary, the aarch64 ONNX Runtime, binutils for arm64, its dependencies from the arm64 sysroot,
# and the binary run under qemu-user where this script runs it.
NATIVE=$(dpkg --print-architecture)
ARCH=${DEB_ARCH:-$NATIVE}
case "$ARCH" in
  amd64) ORT_ARCH=x86_64 TRIPLE=x86_64-linux-gnu ;;
  arm64) ORT_ARCH=aarch64 TRIPLE=aarch64-linux-gnu ;;
  *) echo "build-deb: unsupported architecture $ARCH" >&2; exit 1 ;;
esac
if [ "$ARCH" = "$NATIVE" ]; then
  BIN=${GATEWATCH_BIN:-target/release/gatewatch}
  ORT_DIR=.cache/onnxruntime
  STRIP=strip
  RUN=()
else
  [ "$ARCH" = arm64 ] && [ "$NATIVE" = amd64 ] || { echo "build-deb: cannot build $ARCH on $NATIVE" >&2; exit 1; }
  BIN=${GATEWATCH_BIN:-target/aarch64-unknown-linux-gnu/release/gatewatch}
  ORT_DIR=.cache/onnxruntime-$ORT_ARCH
  STRIP=$TRIPLE-strip
  SYSROOT=.cache/arm64-sysroot
  [ -d "$SYSROOT/var/lib/gatewatch-shlibs" ] || { echo "build-deb: $SYSROOT is missing; run scripts/cross-arm64.sh" >&2; exit 1; }
  RUN=(qemu-aarch64-static -cpu cortex-a76 -L "$SYSROOT")
fi
OUT=target/debian
WORK=$OUT/build
PKG=$WORK/debian/gatewatch
DEB=$OUT/gatewatch_${VERSION}_${ARCH}.deb
# Who answers for the package; example.org (a reserved domain) is a placeholder until the project
# has a release address: set DEB_MAINTAINER for a real release.
MAINTAINER=${DEB_MAINTAINER:-gatewatch developers <gatewatch@example.org>}

[ -x "$BIN" ] || { echo "build-deb: $BIN is missing; run make build" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps fakeroot python3 "$STRIP" "${RUN[@]:0:1}"; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing; run make setup" >&2; exit 1; }
done

rm -rf "$WORK"
mkdir -p "$PKG/DEBIAN" "$PKG/usr/bin" "$PKG/usr/lib/gatewatch" "$PKG/usr/share/gatewatch/models" \
  "$PKG/etc/gatewatch" "$PKG/lib/systemd/system" "$PKG/usr/share/doc/gatewatch/examples" \
  "$PKG/usr/share/lintian/overrides"

# The binary, without its debug line tables (111 MB -> ~40 MB); dh_strip's flags.
install -m 0755 "$BIN" "$PKG/usr/bin/gatewatch"
"$STRIP" --remove-section=.comment --remove-section=.note --strip-unneeded "$PKG/usr/bin/gatewatch"

# ONNX Runtime and the default models, each checked against models/manifest.toml (the manifest
# compiled into the binary is the same file), and the manifest itself for `models verify`.
python3 - "$ORT_ARCH" "$PKG" "$ORT_DIR" <<'EOF'
import hashlib, os, shutil, sys, tomllib
arch, pkg, ort_dir = sys.argv[1], sys.argv[2], sys.argv[3]
m = tomllib.load(open("models/manifest.toml", "rb"))
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
def put(src, want, dst):
    if not os.path.isfile(src):
        sys.exit(f"build-deb: {src} is missing; run scripts/fetch-models.py (make setup)")
    got = sha(src)
    if got != want:
        sys.exit(f"build-deb: {src} has sha256 {got}, the manifest says {want}")
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
rt = [r for r in m["runtime"] if r["arch"] == arch]
if len(rt) != 1:
    sys.exit(f"build-deb: no single runtime entry for {arch} in the manifest")
lib = os.path.basename(rt[0]["file"])
put(os.path.join(ort_dir, lib), rt[0]["sha256"], f"{pkg}/usr/lib/gatewatch/{lib}")
os.symlink(lib, f"{pkg}/usr/lib/gatewatch/libonnxruntime.so")
models = [e for e in m["model"] if "default" in e["sets"]]
for e in models:
    put(os.path.join("models/cache", e["file"]), e["sha256"], f"{pkg}/usr/share/gatewatch/models/{e['file']}")
shutil.copyfile("models/manifest.toml", f"{pkg}/usr/share/gatewatch/models/manifest.toml")
os.chmod(f"{pkg}/usr/share/gatewatch/models/manifest.toml", 0o644)
print(f"build-deb: {lib} and {len(models)} default models match the manifest")
EOF

# The conffile: the documented example with the values only the site knows emptied, so that
# `gatewatch check` refuses it, naming each key, until it is edited.
python3 - "$PKG/etc/gatewatch/gatewatch.toml" <<'EOF'
import sys
text = open("config/gatewatch.example.toml", encoding="utf-8").read()
header = """# /etc/gatewatch/gatewatch.toml: fill in site, device, mqtt.host and the camera's lane and url
# (empty below), then check it with
#     gatewatch check --config /etc/gatewatch/gatewatch.toml
# and start the service with `systemctl enable --now gatewatch`. Installed from the example in
# /usr/share/doc/gatewatch/examples/; upgrades keep your edits (a conffile).

"""
for old, new in [('site = "mongcai"', 'site = ""'), ('device = "lane1-box"', 'device = ""'),
                 ('host = "127.0.0.1"', 'host = ""'), ('lane = "in-1"', 'lane = ""'),
                 ('url = "rtsp://192.0.2.10:554/stream1"', 'url = ""')]:
    if text.count(old) != 1:
        sys.exit(f"build-deb: the example config no longer holds {old!r} once")
    text = text.replace(old, new)
open(sys.argv[1], "w", encoding="utf-8").write(header + text)
EOF
chmod 0640 "$PKG/etc/gatewatch/gatewatch.toml"
if "${RUN[@]}" "$BIN" check --config "$PKG/etc/gatewatch/gatewatch.toml" >/dev/null 2>&1; then
  echo "build-deb: the config template passes gatewatch check; it must not" >&2; exit 1
fi

install -m 0644 systemd/gatewatch.service "$PKG/lib/systemd/system/gatewatch.service"

DOC=$PKG/usr/share/doc/gatewatch
install -m 0644 README.md "$DOC/README.md"
install -m 0644 cross/README.md "$DOC/gate-box-guide.md"
install -m 0644 config/gatewatch.example.toml config/mosquitto-acl.example "$DOC/examples/"
gzip -9n -c CHANGELOG.md > "$DOC/CHANGELOG.md.gz"
# A native package's changelog, in Debian's format (the project's history is CHANGELOG.md.gz).
DATE=$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")
printf 'gatewatch (%s) bookworm; urgency=medium\n\n  * Release %s; see /usr/share/doc/gatewatch/CHANGELOG.md.gz.\n\n -- %s  %s\n' \
  "$VERSION" "$VERSION" "$MAINTAINER" "$DATE" | gzip -9n > "$DOC/changelog.gz"
python3 - "$DOC/copyright" "$ORT_ARCH" <<'EOF'
import sys, tomllib
m = tomllib.load(open("models/manifest.toml", "rb"))
# The runtime package of the architecture being packaged: the other architecture's is not shipped.
runtime_pkgs = {r["package"] for r in m["runtime"]}
shipped_runtime = {r["package"] for r in m["runtime"] if r["arch"] == sys.argv[2]}
out = ["Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
       "Upstream-Name: gatewatch", "",
       "Files: *", "Copyright: 2026 gatewatch developers", "License: Apache-2.0",
       " On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.", ""]
lic = {"MIT": False}
for p in m["package"]:
    if p.get("optional"):
        continue
    if p["id"] in runtime_pkgs:
        if p["id"] not in shipped_runtime:
            continue
        files = "usr/lib/gatewatch/*"
    else:
        files = " ".join(f"usr/share/gatewatch/models/{e['file']}" for e in m["model"]
                         if e["package"] == p["id"] and "default" in e["sets"])
        if not files:
            continue
    version = p.get("version") or "?"
    holder = "Microsoft Corporation" if p["id"] in runtime_pkgs else f"the authors of {p['registry']} package {p['name']} {version}"
    out += [f"Files: {files}", f"Copyright: {holder}", f"License: {p['licence']}"]
    if p["id"] in runtime_pkgs:
        out.append(f"Comment: ONNX Runtime {version}, unchanged from the {p['registry']} file {p['file']}.")
    # Models the fetch step rewrote are modified works: say so, and by what.
    converted = [e for e in m["model"]
                 if e["package"] == p["id"] and "default" in e["sets"] and "convert" in e]
    if converted:
        out.append("Comment: Converted by the gatewatch fetch step (the scripts are in its source):")
        out += [f" {e['file']} is {e['path']} converted by {e['convert']}." for e in converted]
    out.append("")
    lic["MIT"] |= p["licence"] == "MIT"
if lic["MIT"]:
    out += ["License: MIT",
            " Permission is hereby granted, free of charge, to any person obtaining a copy of this",
            " software and associated documentation files (the \"Software\"), to deal in the Software",
            " without restriction, including without limitation the rights to use, copy, modify, merge,",
            " publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons",
            " to whom the Software is furnished to do so, subject to the following conditions:",
            " .",
            " The above copyright notice and this permission notice shall be included in all copies or",
            " substantial portions of the Software.",
            " .",
            " THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.", ""]
open(sys.argv[1], "w").write("\n".join(out))
EOF
chmod 0644 "$DOC/copyright"

# ONNX Runtime's PyPI build links curl and mbedtls statically; gatewatch loads it unchanged (its
# sha256 is pinned), so the embedded copies are declared rather than removed (docs/packaging.md).
cat > "$PKG/usr/share/lintian/overrides/gatewatch" <<'EOF'
# The pinned ONNX Runtime wheel's library, shipped as built upstream (docs/packaging.md).
gatewatch: embedded-library curl [usr/lib/gatewatch/libonnxruntime.so.*]
gatewatch: embedded-library mbedtls [usr/lib/gatewatch/libonnxruntime.so.*]
# The config may hold broker credentials: root:gatewatch 0640 (group set by postinst).
gatewatch: non-standard-file-perm 0640 != 0644 [etc/gatewatch/gatewatch.toml]
EOF
chmod 0644 "$PKG/usr/share/lintian/overrides/gatewatch"

# Maintainer scripts and conffiles.
install -m 0755 packaging/postinst packaging/postrm packaging/prerm "$PKG/DEBIAN/"
echo /etc/gatewatch/gatewatch.toml > "$PKG/DEBIAN/conffiles"

# Dependencies from the shared libraries the binary and ONNX Runtime link (OpenCV's runtime
# libraries, libstdc++, libc), plus adduser for the maintainer scripts.
if [ "$ARCH" = "$NATIVE" ]; then
  mkdir -p "$WORK/debian"
  printf 'Source: gatewatch\n\nPackage: gatewatch\nArchitecture: any\n' > "$WORK/debian/control"
  SHLIBS=$(cd "$WORK" && dpkg-shlibdeps -O -xgatewatch \
    debian/gatewatch/usr/bin/gatewatch debian/gatewatch/usr/lib/gatewatch/libonnxruntime.so.* 2>/dev/null \
    | sed -n 's/^shlibs:Depends=//p')
else
  # The sysroot has no dpkg database for dpkg-shlibdeps to search, so the same rule is applied by
  # hand: every library the binary and ONNX Runtime need (their NEEDED entries) is looked up in
  # the shlibs files of the arm64 packages that were unpacked into the sysroot.
  SHLIBS=$(python3 scripts/deb-shlibs.py "$SYSROOT/var/lib/gatewatch-shlibs" \
    "$PKG/usr/bin/gatewatch" "$PKG"/usr/lib/gatewatch/libonnxruntime.so.*)
fi
[ -n "$SHLIBS" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
(cd "$PKG" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
  | xargs -0 md5sum > DEBIAN/md5sums)
SIZE=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
cat > "$PKG/DEBIAN/control" <<EOF
Package: gatewatch
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $SIZE
Depends: adduser, $SHLIBS
Section: video
Priority: optional
Homepage: https://gatewatch.local/
Description: edge vision for border-gate lanes and truck yards
 gatewatch pulls frames from a lane's cameras, reads licence plates and QR
 codes with local ONNX models and publishes one event per vehicle passage over
 MQTT, with a disk-backed outbox so that broker outages lose nothing.
 .
 This package holds the binary, ONNX Runtime, the default model set and a
 hardened systemd unit; the service is enabled by the administrator once
 /etc/gatewatch/gatewatch.toml is filled in.
EOF

# Owners are root in the archive; the conffile's group is set by postinst (the gatewatch group is
# made there).
dpkg-deb --root-owner-group -Zxz --build "$PKG" "$DEB" >/dev/null
echo "build-deb: $DEB ($(du -h "$DEB" | cut -f1)), Depends: adduser, $SHLIBS"

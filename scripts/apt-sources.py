#!/usr/bin/env python3
"""Print this machine's Debian 12 (bookworm) apt sources as one-line `deb URI SUITE COMPONENTS`
entries, the form mmdebstrap takes as mirrors. Both the package install test's clean root and the
arm64 sysroot are made from the mirrors this machine already uses."""
import glob
import re

lines = []
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        f = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            k, v = line.split(":", 1)
            f[k.strip().lower()] = v.split()
        if "deb" not in f.get("types", []) or f.get("enabled", ["yes"])[0] == "no":
            continue
        for uri in f.get("uris", []):
            for suite in f.get("suites", []):
                if suite.startswith("bookworm"):
                    lines.append(f"deb {uri} {suite} {' '.join(f.get('components', ['main']))}")
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        for line in open(path):
            w = line.split()
            if w[:1] == ["deb"] and "bookworm" in " ".join(w):
                lines.append(" ".join(w))
    except OSError:
        pass
print("\n".join(dict.fromkeys(lines)))

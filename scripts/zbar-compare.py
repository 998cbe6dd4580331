#!/usr/bin/python3
"""ZBar's column of docs/qr.md: `zbarimg` over ZXing black-box folders at four rotations.

Usage: scripts/zbar-compare.py (Debian's /usr/bin/python3, which sees the apt packages)
      scripts/zbar-compare.py [DATASET_DIR] [--negatives DIR]

Scores like `gatewatch eval qr`: an image at a rotation counts as decoded when one of the codes
zbarimg reports has exactly the expected text, and as wrong when it reports codes but none has it.
With --negatives, every image is scaled to 1920x1080 and the false positives and the median
decode time are reported (zbarimg's process start is measured separately and subtracted).
Needs Debian's zbar-tools and python3-pil (or python3-opencv) for rotating and scaling:
`apt install zbar-tools python3-pil`. A measuring aid only: the product does not use ZBar.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def load_image_lib():
    try:
        import cv2  # noqa: F401

        return "cv2"
    except ImportError:
        from PIL import Image  # noqa: F401

        return "pil"


LIB = load_image_lib()


def rotated_copy(src, degrees, out):
    if LIB == "cv2":
        import cv2

        img = cv2.imread(src, cv2.IMREAD_GRAYSCALE)
        codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
        if degrees:
            img = cv2.rotate(img, codes[degrees])
        cv2.imwrite(out, img)
    else:
        from PIL import Image

        Image.open(src).convert("L").rotate(-degrees, expand=True).save(out)


def scaled_copy(src, out):
    if LIB == "cv2":
        import cv2

        img = cv2.imread(src, cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(out, cv2.resize(img, (1920, 1080)))
    else:
        from PIL import Image

        Image.open(src).convert("L").resize((1920, 1080)).save(out)


def zbar(path):
    """Texts zbarimg decodes in `path` (QR only), and the wall time in ms."""
    t0 = time.perf_counter()
    r = subprocess.run(
        ["zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", path],
        capture_output=True,
    )
    ms = (time.perf_counter() - t0) * 1000
    # --raw prints each payload (converted to UTF-8, as gatewatch's text is) followed by a newline;
    # payloads may hold newlines themselves, so matching is done on the whole output.
    out = r.stdout.decode("utf-8", "replace") if r.returncode == 0 else ""
    return out, ms


def holds(out, want):
    """Whether zbarimg's output holds a payload exactly equal to `want`."""
    return out == want + "\n" or out.startswith(want + "\n") or ("\n" + want + "\n") in out


def images(folder):
    for root, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext.lower() in (".png", ".jpg", ".jpeg", ".gif") and os.path.exists(
                os.path.join(root, stem + ".txt")
            ):
                yield os.path.join(root, f), os.path.join(root, stem + ".txt")


def black_box(folder):
    decoded, wrong, n = 0, 0, 0
    per_rot = {}
    with tempfile.TemporaryDirectory() as tmp:
        for img, txt in images(folder):
            want = open(txt, encoding="utf-8", errors="replace", newline="").read()
            for rot in (0, 90, 180, 270):
                out = os.path.join(tmp, "r.png")
                rotated_copy(img, rot, out)
                raw, _ = zbar(out)
                n += 1
                ok = holds(raw, want)
                d = per_rot.setdefault(rot, {"decoded": 0, "wrong": 0})
                if ok:
                    decoded += 1
                    d["decoded"] += 1
                elif raw:
                    wrong += 1
                    d["wrong"] += 1
    return {"engine": "zbarimg " + version(), "attempts": n, "decoded": decoded, "wrong": wrong,
            "rotations": per_rot}


def negatives(folder):
    fps, times = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        blank = os.path.join(tmp, "blank.png")
        if LIB == "cv2":
            import cv2
            import numpy

            cv2.imwrite(blank, numpy.zeros((8, 8), numpy.uint8))
        else:
            from PIL import Image

            Image.new("L", (8, 8)).save(blank)
        start = statistics.median(zbar(blank)[1] for _ in range(10))
        for f in sorted(os.listdir(folder)):
            if not f.lower().endswith((".png", ".jpg", ".jpeg")):
                continue
            out = os.path.join(tmp, "n.png")
            scaled_copy(os.path.join(folder, f), out)
            raw, ms = zbar(out)
            times.append(max(ms - start, 0.0))
            fps += bool(raw)
    times.sort()
    return {"engine": "zbarimg " + version(), "images": len(times), "false_positives": fps,
            "p50_ms_1080p": round(statistics.median(times), 2),
            "process_start_ms_subtracted": round(start, 2)}


def version():
    r = subprocess.run(["zbarimg", "--version"], capture_output=True)
    return r.stdout.decode().strip()


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    if args[0] == "--negatives":
        print(json.dumps(negatives(args[1])))
    else:
        print(json.dumps(black_box(args[0])))

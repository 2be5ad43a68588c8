"""Fill data/ with ASTE-Data-V2 (14res 14lap 15res 16res) in both formats: data/aste-v2/<ds>/<split>_triplets.txt
and data/d2e2s/<ds>/<split>_dep_triple_polarity_result.json (+ data/d2e2s/types.json).

    python scripts/get_data.py                  # download the public releases
    python scripts/get_data.py --from ../shared/data   # copy a local copy (CI, offline machines)
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import urllib.request

DATASETS = ("14res", "14lap", "15res", "16res")
SPLITS = ("train", "dev", "test")
# Public releases: the raw ASTE-V2 files (Xu et al. 2020) and the D2E2S preprocessed JSON (MIT licence).
ASTE_URL = "https://raw.githubusercontent.com/xuuuluuu/Position-Aware-Tagging-for-ASTE/master/data/ASTE-Data-V2/{ds}/{split}_triplets.txt"
D2E2S_URL = "https://raw.githubusercontent.com/TYZY89/D2E2S/main/data/{ds}/{split}_dep_triple_polarity_result.json"
D2E2S_TYPES_URL = "https://raw.githubusercontent.com/TYZY89/D2E2S/main/data/types.json"


def expected_files():
    for ds in DATASETS:
        for split in SPLITS:
            yield f"aste-v2/{ds}/{split}_triplets.txt", ASTE_URL.format(ds=ds, split=split)
            yield f"d2e2s/{ds}/{split}_dep_triple_polarity_result.json", D2E2S_URL.format(ds=ds, split=split)
    yield "d2e2s/types.json", D2E2S_TYPES_URL


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="source", default=None, help="copy from this folder instead of downloading")
    ap.add_argument("--out", default="data", help="target folder")
    ap.add_argument("--force", action="store_true", help="replace files that are already there")
    args = ap.parse_args(argv)
    missing = []
    for rel, url in expected_files():
        dst = os.path.join(args.out, rel)
        if os.path.exists(dst) and not args.force:
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = dst + ".part"
        try:
            if args.source:
                shutil.copyfile(os.path.join(args.source, rel), tmp)
            else:
                with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            os.replace(tmp, dst)
        except (OSError, ValueError) as err:
            if os.path.exists(tmp):
                os.remove(tmp)
            missing.append(f"{rel} ({err})")
    present = sum(os.path.exists(os.path.join(args.out, rel)) for rel, _ in expected_files())
    print(f"data: {present} of {len(list(expected_files()))} files in {args.out}/")
    if missing:
        print("could not get:\n  " + "\n  ".join(missing), file=sys.stderr)
        if any(m.startswith("d2e2s/") for m in missing) and not any(m.startswith("aste-v2/") for m in missing):
            print("the raw files are there: build the JSON with `python scripts/convert_aste.py --all`",
                  file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())

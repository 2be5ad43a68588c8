"""No remote code: a model folder whose config.json points (auto_map) at its own Python files is
refused with one line, without a "[y/N]" prompt and without importing those files (issue #25 item 7)."""
import builtins
import json

import pytest

from models.encoder import EncoderLoadError, load_config, load_encoder, load_tokenizer


@pytest.fixture
def custom_folder(tmp_path, monkeypatch):
    enc = tmp_path / "encoder"
    enc.mkdir()
    marker = tmp_path / "custom_code_ran"
    (enc / "config.json").write_text(json.dumps(
        {"model_type": "my_custom", "auto_map": {"AutoConfig": "custom.MyConfig", "AutoModel": "custom.MyModel",
                                                 "AutoTokenizer": ["custom.MyTokenizer", None]}}))
    (enc / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["custom.MyTokenizer",
                                                                                          None]}}))
    (enc / "custom.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")

    asked = []

    def no_input(*args, **kwargs):  # transformers' "Do you wish to run the custom code? [y/N]"
        asked.append(args[:1])
        raise EOFError

    monkeypatch.setattr(builtins, "input", no_input)
    return str(enc), marker, asked


@pytest.mark.parametrize("load", [load_config, load_encoder, load_tokenizer,
                                  lambda p: load_encoder(p, pretrained=False)],
                         ids=["config", "encoder", "tokenizer", "encoder_from_config"])
def test_folder_with_custom_code_is_refused_without_prompt(custom_folder, load):
    path, marker, asked = custom_folder
    with pytest.raises(EncoderLoadError) as e:
        load(path)
    assert asked == []  # no prompt, even where stdin is a terminal
    msg = str(e.value)
    assert "custom code" in msg and "never runs" in msg and path in msg and "\n" not in msg
    assert "trust_remote_code=True" not in msg  # not advice this tool can take
    assert not marker.exists()

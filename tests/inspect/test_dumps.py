"""inspect-mask --dump (attncli.inspect.dumps): JSON (equal to --json's output), CSV and
safetensors dumps of a padded batch, atomic writes that leave the old file on failure,
and a bad --dump path refused before the model loads."""

from __future__ import annotations

import json

import pytest
import torch

from attncli.inspect import dumps, reports
from attncli.errors import BadInputError
from helpers import LONG, SHORT, assert_one_line_error, run, run_json



def test_dumps_json_csv_safetensors(capfd, model_dir, tmp_path):
    from safetensors import safe_open

    folder = model_dir("mistral-window")
    shown = run_json(capfd, "inspect-mask", "-m", folder, LONG, SHORT, "--scores", "--weights")
    for ext in ("json", "csv", "safetensors"):
        target = tmp_path / f"dump.{ext}"
        target.write_text("old")
        code, _, err = run(capfd, "inspect-mask", "-m", folder, LONG, SHORT, "--scores", "--weights", "--dump", target)
        assert code == 0, err
    assert json.loads((tmp_path / "dump.json").read_text()) == shown
    lines = (tmp_path / "dump.csv").read_text().splitlines()
    assert lines[0] == "sequence,query,key,query_token,key_token,may_attend,score,weight"
    assert len(lines) == 1 + 2 * 9 * 9
    assert lines[2] == "0,0,1,the,cat,0,-inf,0.0"
    with safe_open(str(tmp_path / "dump.safetensors"), "pt") as f:
        assert f.get_tensor("mask").dtype == torch.bool and f.get_tensor("scores").shape == (2, 9, 9)
        assert f.get_tensor("mask").tolist() == [d["mask"] for d in shown]
        meta = f.metadata()
        assert meta["kind"] == "sliding" and json.loads(meta["tokens"])[1][0] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.csv", "dump.json", "dump.safetensors"]


def test_failed_dump_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "m.safetensors"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(BadInputError, match="No space left"):
        dumps.write_dump(target, reports.masks_alone(4))
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_dump_path_is_checked_before_the_model_loads(capfd, tmp_path):
    code, _, err = run(capfd, "inspect-mask", "-m", tmp_path / "no-model", "hi", "--dump", tmp_path / "x" / "m.csv")
    assert_one_line_error(code, err, 2, "does not exist")
    assert "--dump" in err

"""`toonlab eval` and the evaluation at the end of `toonlab train`: table, metrics.json, picture title."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from toonlab.cli import main
from toonlab.data.synthetic import export_dataset
from toonlab.metrics.report import PHOTO, evaluate_folder
from toonlab.train import load_trained_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    assert main(["train", "cyclegan", "--preset", "fast", "--steps", "2", "--run-dir", str(run), "--quiet"]) == 0
    return run


def test_train_ends_with_metrics_json_beside_the_baselines(run_dir):
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["protocol"]["name"].startswith("toonlab-synthetic-v1: seed 0, test identities 0-99, 32 px")
    assert list(record["results"])[:3] == ["cyclegan", PHOTO, "classical filter"]
    assert record["model"]["step"] == 2 and record["model"]["run_dir"] == str(run_dir)
    model = record["results"]["cyclegan"]
    assert 0 < model["l1"] < 1 and model["n"] == 100
    assert "CPU" in record["machine"]


def test_eval_prints_the_table_and_writes_json(run_dir, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["eval", str(run_dir), "--n", "12", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test identities 0-11, 32 px" in printed
    lines = printed.splitlines()
    assert any(line.startswith("cyclegan ") for line in lines) and any(line.startswith(PHOTO) for line in lines)
    record = json.loads(out.read_text())
    assert record["results"]["cyclegan"]["n"] == 12 and record["model"]["checkpoint"].endswith("latest.pt")
    # the same checkpoint scores the same: evaluation is deterministic
    assert main(["eval", str(run_dir), "--n", "12", "--json", str(tmp_path / "f.json")]) == 0
    again = json.loads((tmp_path / "f.json").read_text())
    assert again["results"] == record["results"]
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--n", "4", "--markdown"]) == 0
    assert "| cyclegan | " in capsys.readouterr().out


def test_eval_errors_are_clear(run_dir, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", str(run_dir), "--n", "0"]) == 2
    assert main(["eval", str(run_dir), "--data", str(tmp_path / "nofolder")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_folder_eval_offline_says_where_the_inception_file_goes(run_dir, tmp_path, monkeypatch, capsys):
    data = export_dataset(tmp_path / "synthetic", size=32, n_train=2, n_test=4)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert main(["eval", str(run_dir), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "weights-inception-2015-12-05-6726825d.pth" in err and str(tmp_path / "torch") in err


def test_folder_eval_with_an_injected_feature_network(run_dir, tmp_path):
    data = export_dataset(tmp_path / "synthetic", size=32, n_train=2, n_test=6)
    model = load_trained_model(run_dir)

    def colour_statistics(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([images.mean((2, 3)), images.std((2, 3))], 1)

    record = evaluate_folder(model.translator(), data, 32, feature=colour_statistics, name="cyclegan")
    assert list(record["results"]) == ["cyclegan", PHOTO, "classical filter"]
    scores = record["results"]["cyclegan"]
    assert scores["n_real"] == scores["n_fake"] == 6 and scores["warnings"]  # far too few for FID: said so
    assert record["model"]["n_photos"] == 6 and record["data"] == str(data)

"""The `toonlab` command: export, train, resume, translate, help and errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from toonlab.cli import build_parser, main, parse_assignments, CLIError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "cyclegan", "--preset", "fast", "--steps", "3", "--run-dir", str(run), "--quiet",
                 "--hparam", "lambda_identity=0.25", "--lr", "0.0003", "--checkpoint-every", "2"])
    assert code == 0
    return run


def test_train_writes_checkpoint_picture_config(run_dir):
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 3 and state["kind"] == "cyclegan"
    assert state["config"]["lambda_identity"] == 0.25 and state["config"]["lr"] == 0.0003
    assert json.loads((run_dir / "config.json").read_text())["config"]["image_size"] == 32
    picture = Image.open(run_dir / "result.png")
    assert picture.size[0] > 300 and picture.size[1] > 200
    assert (run_dir / "losses.png").is_file()


def test_resume_continues_the_step_count(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert main(["train", "cyclegan", "--resume", str(copy), "--steps", "2", "--quiet"]) == 0
    state = torch.load(copy / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 5 and len(state["history"]) == 5


def test_resume_refuses_another_model(run_dir, capsys):
    assert main(["train", "munit", "--resume", str(run_dir), "--steps", "1", "--quiet"]) == 2
    assert "is a cyclegan checkpoint" in capsys.readouterr().err


def test_translate_folder_and_single_image(run_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.new("RGB", (40, 50), (30 * i, 100, 200)).save(photos / f"p{i}.jpg")
    (photos / "notes.txt").write_text("not an image")
    assert main(["translate", str(run_dir), str(photos), str(tmp_path / "out")]) == 0
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outs == ["p0.png", "p1.png"]
    assert Image.open(tmp_path / "out" / "p0.png").size == (32, 32)
    assert main(["translate", str(run_dir), str(photos / "p1.jpg"), str(tmp_path / "one.png"), "--size", "48"]) == 0
    assert Image.open(tmp_path / "one.png").size == (48, 48)


def test_translate_errors_are_clear(run_dir, tmp_path, capsys):
    assert main(["translate", str(run_dir), str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["translate", str(run_dir), str(bad), str(tmp_path / "o.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main(["translate", str(tmp_path / "nothing.pt"), str(bad), str(tmp_path / "o.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    photo = tmp_path / "p.png"
    Image.new("RGB", (40, 40), (120, 90, 60)).save(photo)
    assert main(["translate", str(run_dir), str(photo), str(tmp_path / "o.png"), "--num-styles", "3"]) == 2
    assert "multimodal models (MUNIT); cyclegan draws no styles" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_the_run_seed_is_the_weights_seed(tmp_path, capsys):
    assert main(["train", "cyclegan", "--preset", "fast", "--steps", "1", "--seed", "5", "--no-eval",
                 "--run-dir", str(tmp_path / "r"), "--quiet"]) == 0
    import json

    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["seed"] == 5
    assert main(["train", "cyclegan", "--preset", "fast", "--steps", "1", "--seed", "5", "--config", "seed=2",
                 "--run-dir", str(tmp_path / "s"), "--quiet"]) == 2
    assert "give the run's one seed as --seed" in capsys.readouterr().err


def test_train_on_a_missing_folder_names_the_layout(tmp_path, capsys):
    assert main(["train", "cyclegan", "--preset", "fast", "--data", str(tmp_path / "nope"), "--steps", "1",
                 "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    assert "trainA" in capsys.readouterr().err


def test_export_synthetic(tmp_path):
    out = tmp_path / "syn"
    assert main(["export-synthetic", str(out), "--size", "32", "--train", "3", "--test", "2", "--quiet"]) == 0
    for folder, n in (("trainA", 3), ("trainB", 3), ("testA", 2), ("testB", 2)):
        assert len(list((out / folder).glob("*.png"))) == n


def test_assignments_parse_values():
    assert parse_assignments(["a=5", "b=0.5", "c=instance", "d=True"], "--x") == {"a": 5, "b": 0.5, "c": "instance", "d": True}
    with pytest.raises(CLIError, match="NAME=VALUE"):
        parse_assignments(["oops"], "--hparam")


@pytest.mark.parametrize("command", ["train", "translate", "export-synthetic"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: toonlab" in text and len(text) > 300


def test_console_script_is_installed():
    exe = shutil.which("toonlab") or str(__import__("pathlib").Path(sys.executable).parent / "toonlab")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "export-synthetic" in proc.stdout


def test_resume_reads_the_checkpoint_once(tmp_path, monkeypatch):
    import toonlab.checkpoint
    import toonlab.train
    from toonlab.cli import main

    run = tmp_path / "run"
    common = ["--steps", "1", "--device", "cpu", "--quiet", "--no-eval"]
    assert main(["train", "cyclegan", "--preset", "fast", "--run-dir", str(run), *common]) == 0
    reads, read = [], toonlab.checkpoint.read_checkpoint

    def counting_read(path, *args, **kwargs):
        reads.append(path)
        return read(path, *args, **kwargs)

    monkeypatch.setattr(toonlab.checkpoint, "read_checkpoint", counting_read)
    monkeypatch.setattr(toonlab.train, "read_checkpoint", counting_read)
    assert main(["train", "cyclegan", "--resume", str(run), *common]) == 0
    assert len(reads) == 1  # checked by the CLI, then handed to Trainer.from_checkpoint

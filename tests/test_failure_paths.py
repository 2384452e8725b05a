"""The failure paths a new user hits (issue 13): nothing lost, nothing silently wrong, no tracebacks.

* a diverging run never replaces a good checkpoint, and names the one it kept;
* training into a run directory that holds a checkpoint is refused without --resume / --overwrite;
* SIGTERM saves like Ctrl-C, and the printed resume command works; kill -9 never corrupts a checkpoint;
* ``translate`` never overwrites its inputs or earlier outputs, keeps names apart, skips bad files;
* bad arguments get one line and a non-zero exit code, before anything is written.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from toonlab.cli import main
from toonlab.config import DeviceError, pick_device
from toonlab.hub import CheckpointError
from toonlab.train import Trainer, TrainingDiverged, make_trainer, read_checkpoint

FAST = ["--preset", "fast", "--quiet", "--no-eval"]


def train(*args: str) -> int:
    return main(["train", "cyclegan", *args])


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def finite(state: dict) -> bool:
    return all(bool(v.isfinite().all()) for v in state["model"].values() if v.is_floating_point())


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    """A 3-step fast CycleGAN run (copy it before changing it)."""
    path = tmp_path_factory.mktemp("failure") / "run"
    assert train(*FAST, "--steps", "3", "--run-dir", str(path)) == 0
    return path


@pytest.fixture
def copy(run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos") / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "a.jpg", "b.JPG", "sub/a.png"]):
        Image.new("RGB", (40, 36), (40 * i, 120, 200 - 30 * i)).save(folder / name)
    return folder


# --- 1. divergence keeps the good checkpoint ------------------------------------------------------

def test_nan_weights_are_never_checkpointed(tmp_path, one_thread):
    trainer = make_trainer("cyclegan", "fast", run_dir=tmp_path, checkpoint_every=1, progress=False, device="cpu")

    def poison(t, entry):  # an update that made a weight NaN, with finite losses this step
        if t.step == 3:
            with torch.no_grad():
                next(t.model.parameters())[0] = float("nan")

    trainer.callbacks.append(poison)
    with pytest.raises(TrainingDiverged, match=r"after step 3 the weights are NaN.*latest\.pt \(step 2\)"):
        trainer.fit(6)
    state = read_checkpoint(tmp_path)
    assert state["step"] == 2 and finite(state)
    with pytest.raises(TrainingDiverged, match="no checkpoint was written"):
        trainer.save_checkpoint()  # also when asked directly
    assert read_checkpoint(tmp_path)["step"] == 2


def test_a_huge_learning_rate_leaves_a_checkpoint_that_resumes(copy, capsys):
    # the issue's command: weights explode in one update; the checkpoint named as good must really be
    assert train("--resume", str(copy), "--lr", "1e9", "--steps", "5", "--checkpoint-every", "1", "--quiet",
                 "--no-eval") == 1
    line = one_line(capsys.readouterr().err)
    kept = re.search(r"last good checkpoint is (\S+) \(step (\d+)\)", line)
    assert kept, line
    state = read_checkpoint(kept.group(1))
    assert state["step"] == int(kept.group(2)) >= 3 and finite(state) and state["config"]["lr"] < 1
    command = re.search(r"resume with `([^`]+)`", line).group(1)
    assert command.startswith(f"toonlab train cyclegan --resume {copy} --lr ")
    assert main(shlex.split(command)[1:] + ["--steps", "2", "--quiet", "--no-eval"]) == 0  # works as printed
    after = read_checkpoint(copy)
    assert after["step"] == state["step"] + 2 and finite(after)


def test_translate_refuses_a_checkpoint_with_nan_weights(copy, photos, tmp_path, capsys):
    state = torch.load(copy / "checkpoints" / "latest.pt", weights_only=True)
    next(iter(state["model"].values())).fill_(float("nan"))
    torch.save(state, tmp_path / "nan.pt")
    assert main(["translate", str(tmp_path / "nan.pt"), str(photos / "a.png"), str(tmp_path / "o.png")]) == 2
    assert "NaN or infinite weights" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "o.png").exists()
    assert train("--resume", str(tmp_path / "nan.pt"), "--steps", "1", "--quiet", "--no-eval",
                 "--run-dir", str(tmp_path / "r")) == 2
    assert "NaN or infinite weights" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


# --- 2. an existing run is never trained over by accident ----------------------------------------

def test_training_into_a_run_with_a_checkpoint_is_refused(copy, capsys):
    before = {name: (copy / name).read_bytes() for name in ("checkpoints/latest.pt", "config.json", "history.json")}
    assert train(*FAST, "--steps", "1", "--run-dir", str(copy)) == 2
    line = one_line(capsys.readouterr().err)
    assert "at step 3" in line and f"--resume {copy}" in line and "--overwrite" in line
    assert {name: (copy / name).read_bytes() for name in before} == before  # nothing written, config.json included
    (copy / "notes.txt").write_text("mine")
    assert train(*FAST, "--steps", "1", "--run-dir", str(copy), "--overwrite") == 0
    assert read_checkpoint(copy)["step"] == 1 and (copy / "notes.txt").read_text() == "mine"


def test_resuming_into_another_run_is_refused(run, copy, capsys):
    assert train("--resume", str(run), "--run-dir", str(copy), "--steps", "1", "--quiet", "--no-eval") == 2
    assert "--overwrite" in one_line(capsys.readouterr().err)
    assert train("--resume", str(copy), "--overwrite", "--steps", "1", "--quiet", "--no-eval") == 2
    assert "cannot be combined with --resume" in one_line(capsys.readouterr().err)
    assert read_checkpoint(copy)["step"] == 3


# --- 3. SIGTERM saves like Ctrl-C; kill -9 never corrupts ------------------------------------------

def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", "toonlab.cli", "train", "cyclegan", *extra, "--run-dir", str(run_dir),
                             "--quiet", "--no-eval"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _finished_steps(run_dir: Path) -> int:
    samples = sorted((run_dir / "samples").glob("step_*.png")) if (run_dir / "samples").is_dir() else []
    return int(samples[-1].stem[5:]) if samples else 0


def test_sigterm_finishes_the_step_and_saves(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, "--preset", "fast", "--steps", "300", "--checkpoint-every", "1000", "--sample-every", "1")
    _wait_for(lambda: _finished_steps(run_dir) >= 1, proc)
    finished = _finished_steps(run_dir)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    line = one_line(err)
    assert "stopped by SIGTERM" in line and "checkpoint of step" in line
    state = read_checkpoint(run_dir)
    assert finished <= state["step"] < 300 and len(state["history"]) == state["step"]
    command = re.search(r"resume with `([^`]+)`", line).group(1)
    assert command == f"toonlab train cyclegan --resume {run_dir}"
    assert main(shlex.split(command)[1:] + ["--steps", "1", "--quiet", "--no-eval"]) == 0
    assert read_checkpoint(run_dir)["step"] == state["step"] + 1


def test_ctrl_c_prints_a_resume_command_that_works(copy, capsys):
    def interrupt_after_a_step():
        deadline = time.monotonic() + 60
        while not (copy / "samples" / "step_00000004.png").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt_after_a_step)
    sender.start()
    code = train("--resume", str(copy), "--steps", "500", "--checkpoint-every", "1000", "--sample-every", "1",
                 "--quiet", "--no-eval")
    sender.join()
    assert code == 130
    line = one_line(capsys.readouterr().err)
    assert "interrupted (Ctrl-C)" in line
    step = read_checkpoint(copy)["step"]
    assert 4 <= step < 503
    command = re.search(r"resume with `([^`]+)`", line).group(1)
    assert main(shlex.split(command)[1:] + ["--steps", "1", "--quiet", "--no-eval"]) == 0
    assert read_checkpoint(copy)["step"] == step + 1


def test_kill_9_at_random_moments_never_corrupts_the_checkpoint(tmp_path):
    kills = int(os.environ.get("TOONLAB_KILLS", "3"))
    rng = random.Random(13)
    run_dir = tmp_path / "run"
    steps, corrupt = [], 0
    for attempt in range(kills):
        args = ["--preset", "fast"] if attempt == 0 else ["--resume", str(run_dir)]
        proc = _start(run_dir, *args, "--steps", "400", "--checkpoint-every", "1")
        before = steps[-1] if steps else 0
        _wait_for(lambda: (run_dir / "history.json").exists() and (not steps or _history_len(run_dir) > before), proc)
        time.sleep(rng.uniform(0, 0.4))
        proc.kill()
        proc.communicate()
        try:
            state = read_checkpoint(run_dir)
            assert finite(state) and len(state["history"]) == state["step"]
            steps.append(state["step"])
        except (CheckpointError, AssertionError):
            corrupt += 1
    assert corrupt == 0 and steps == sorted(steps) and steps[-1] > steps[0]


def _history_len(run_dir: Path) -> int:
    try:
        return read_checkpoint(run_dir)["step"]
    except CheckpointError:
        return 0


# --- 4. translate keeps inputs and earlier outputs ------------------------------------------------

def test_translate_refuses_to_replace_its_input(run, photos, tmp_path, capsys):
    original = (photos / "a.png").read_bytes()
    assert main(["translate", str(run), str(photos / "a.png"), str(photos / "a.png")]) == 2
    assert "is an input image" in one_line(capsys.readouterr().err)
    assert main(["translate", str(run), str(photos), str(photos / "sub" / "..")]) == 2
    assert "is the input folder" in one_line(capsys.readouterr().err)
    assert (photos / "a.png").read_bytes() == original
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg", "a.png", "b.JPG", "sub"]


def test_translate_a_folder_keeps_structure_and_names(run, photos, tmp_path, capsys):
    work = tmp_path / "photos"
    shutil.copytree(photos, work)
    out = work / "cartoons"  # inside the input folder: not read back on the next run
    assert main(["translate", str(run), str(work), str(out)]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "a_jpg.png", "b.png", "sub/a.png"]
    assert "wrote 4 image(s)" in capsys.readouterr().out
    # a second run does not translate its own cartoons, and does not overwrite without --overwrite
    stamp = (out / "a.png").read_bytes()
    assert main(["translate", str(run), str(work), str(out)]) == 2
    assert "already exist" in one_line(capsys.readouterr().err) and (out / "a.png").read_bytes() == stamp
    assert main(["translate", str(run), str(work), str(out), "--overwrite"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == written
    # a single image is not overwritten either
    assert main(["translate", str(run), str(work / "a.jpg"), str(out / "a.png")]) == 2
    assert "already exists" in one_line(capsys.readouterr().err)


def test_translate_skips_a_bad_image_with_one_line_and_a_count(run, photos, tmp_path, capsys):
    work = tmp_path / "photos"
    shutil.copytree(photos, work)
    (work / "broken.png").write_bytes(b"\x89PNG not really")
    (work / "empty.jpg").write_bytes(b"")
    assert main(["translate", str(run), str(work), str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 2 and "broken.png" in skipped[0] and "Traceback" not in captured.err
    assert "translated 4 of 6 image(s)" in captured.out and "2 unreadable file(s) skipped" in captured.out
    assert len(list((tmp_path / "out").rglob("*.png"))) == 4


def test_translate_writes_atomically(run, photos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o.png"
    assert main(["translate", str(run), str(photos / "a.png"), str(out)]) == 0
    good = out.read_bytes()

    def broken_save(self, fp, format=None, **kw):
        fp.write(b"half a png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    assert main(["translate", str(run), str(photos / "a.jpg"), str(out), "--overwrite"]) == 2
    assert "No space left on device" in one_line(capsys.readouterr().err)
    assert out.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


# --- 6. one clear line, non-zero exit, nothing written --------------------------------------------

BAD_TRAIN_ARGS = [
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "-1"], "--lr must be a finite number >= 0"),
    (["--hparam", "lambda_a=nan"], "lambda_a must be a finite number"),
    (["--hparam", "lambda_a=inf"], "lambda_a must be a finite number"),
    (["--hparam", "lambda_identity=-0.5"], "lambda_identity must be >= 0"),
    (["--hparam", "lambda_a=abc"], "lambda_a must be a number"),
    (["--hparam", "ngf=8"], "not a tunable hyper-parameter"),
    (["--config", "ngf=abc"], "ngf must be a whole number"),
    (["--config", "lr=-2e-4"], "lr must be >= 0"),
    (["--config", "lambda_b=nan"], "lambda_b must be a finite number"),
    (["--config", "dropout=maybe"], "dropout must be True or False"),
    (["--device", "gpu"], "unknown device 'gpu'"),
    (["--steps", "-5"], "--steps must be >= 0"),
    (["--epochs", "nan"], "--epochs must be a finite number"),
    (["--size", "100000"], "--size must be between 1 and"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0"),
]


@pytest.mark.parametrize("args, message", BAD_TRAIN_ARGS, ids=[" ".join(a) for a, _ in BAD_TRAIN_ARGS])
def test_bad_train_arguments_get_one_line_before_anything_is_written(args, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    length = [] if {"--steps", "--epochs"} & set(args) else ["--steps", "1"]
    assert train("--preset", "fast", *length, "--run-dir", str(run_dir), "--quiet", "--no-eval", *args) == 2
    assert message in one_line(capsys.readouterr().err)
    assert not run_dir.exists()


def test_a_missing_gpu_is_one_line(tmp_path, capsys):
    device = "cuda:99" if torch.cuda.is_available() else "cuda"
    assert train("--preset", "fast", "--steps", "1", "--run-dir", str(tmp_path / "r"), "--device", device) == 2
    assert "requested" in one_line(capsys.readouterr().err) and not (tmp_path / "r").exists()
    with pytest.raises(DeviceError):
        pick_device(device)
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("gpu")
    with pytest.raises(RuntimeError):  # still a RuntimeError, as before
        pick_device("gpu")


def test_bad_resume_hparams_leave_the_run_alone(copy, capsys):
    before = (copy / "config.json").read_bytes()
    assert train("--resume", str(copy), "--hparam", "lambda_a=nan", "--steps", "1", "--quiet") == 2
    assert "finite" in one_line(capsys.readouterr().err)
    assert (copy / "config.json").read_bytes() == before and read_checkpoint(copy)["step"] == 3


def test_set_hparams_refuses_nan_and_negative_values_and_changes_nothing(one_thread):
    trainer = make_trainer("cyclegan", "fast", progress=False, device="cpu")
    before = dict(trainer.hparams)
    for values in ({"lr": float("nan")}, {"lambda_a": -1.0}, {"lr": 1e-3, "lambda_b": float("inf")}, {"lr": "abc"}):
        with pytest.raises(ValueError):
            trainer.set_hparams(**values)
        assert trainer.hparams == before
    trainer.set_hparams(lr="1e-3", lambda_a=5)
    assert trainer.hparams["lr"] == 1e-3 and trainer.hparams["lambda_a"] == 5.0


def test_translate_size_and_empty_checkpoints(run, photos, copy, tmp_path, capsys):
    assert main(["translate", str(run), str(photos / "a.png"), str(tmp_path / "o.png"), "--size", "-5"]) == 2
    assert "--size must be between 1 and" in one_line(capsys.readouterr().err)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert main(["translate", str(empty), str(photos / "a.png"), str(tmp_path / "o.png")]) == 2
    assert "is empty (0 bytes)" in one_line(capsys.readouterr().err)
    (copy / "checkpoints" / "latest.pt").write_bytes(b"")
    assert train("--resume", str(copy), "--steps", "1", "--quiet") == 2
    assert "is empty (0 bytes)" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "o.png").exists()


def test_diverged_training_is_one_line_with_exit_code_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Trainer, "max_loss", 1e-6)  # every loss "diverges" at once
    assert train(*FAST, "--steps", "2", "--run-dir", str(tmp_path / "r")) == 1
    line = one_line(capsys.readouterr().err)
    assert "diverged at step 0" in line and "no checkpoint was written yet" in line


# --- 5. translate reads images as training does ---------------------------------------------------

def _translated(run, image: Image.Image, tmp_path: Path, name: str, **save) -> torch.Tensor:
    source, out = tmp_path / f"{name}.png", tmp_path / f"{name}_out.png"
    image.save(source, **save)
    assert main(["translate", str(run), str(source), str(out), "--device", "cpu"]) == 0
    return torch.from_numpy(__import__("numpy").array(Image.open(out).convert("RGB"))).float()


def test_translate_reads_16_bit_alpha_and_exif_like_training(run, tmp_path):
    import numpy as np

    grey = _translated(run, Image.new("RGB", (32, 32), (128, 128, 128)), tmp_path, "grey8")
    deep = Image.fromarray(np.full((32, 32), 32896, dtype=np.uint16))  # 128 * 257: the same grey in 16 bits
    assert deep.mode.startswith("I")
    assert torch.equal(_translated(run, deep, tmp_path, "grey16"), grey)  # not an all-white input
    white = _translated(run, Image.new("RGB", (32, 32), (255, 255, 255)), tmp_path, "white")
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))  # transparent black: composited on white
    assert torch.equal(_translated(run, clear, tmp_path, "clear"), white)
    half = np.zeros((24, 32, 3), dtype=np.uint8)
    half[:, :16] = 255
    upright = Image.fromarray(half).transpose(Image.Transpose.ROTATE_270)  # what a viewer shows
    expected = _translated(run, upright, tmp_path, "upright")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    assert torch.equal(_translated(run, Image.fromarray(half), tmp_path, "exif", exif=exif), expected)


def test_run_files_get_normal_permissions_and_stale_temporaries_are_swept(tmp_path):
    import os
    import stat

    from toonlab.io import atomic_write
    from toonlab.train import make_trainer

    mask = os.umask(0o022)
    try:
        written = atomic_write(tmp_path / "f.txt", lambda handle: handle.write(b"x"))
        assert stat.S_IMODE(written.stat().st_mode) == 0o644  # not mkstemp's 0600
    finally:
        os.umask(mask)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    stale = [run / "checkpoints" / ".latest.pt.abc123.tmp", run / ".history.json.xyz.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    keep = run / "checkpoints" / "notes.tmp"
    keep.write_text("mine")
    make_trainer("cyclegan", "fast", run_dir=run, progress=False)
    assert not any(path.exists() for path in stale) and keep.exists()


# --- 7. history.json is written with the checkpoint -----------------------------------------------

class _Killed(BaseException):
    """A simulated kill -9 at one point of a checkpoint write."""


def test_history_json_never_lacks_a_step_the_checkpoint_holds_after_a_kill(tmp_path, one_thread, monkeypatch):
    """Kill the save at each of its file operations in turn: the pair on disk must still agree.

    The checkpoint was renamed first and history.json written after it (and after the step_N.pt
    copy), so a kill in between left a history.json that lacked the checkpoint's last steps.
    """
    import json
    import tempfile

    trainer = make_trainer("cyclegan", "fast", run_dir=tmp_path, checkpoint_every=1000, keep_checkpoints=True,
                           progress=False, device="cpu")
    events: list[str] = []
    kill_at = {"event": None}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            events.append(name)
            if len(events) == kill_at["event"]:
                raise _Killed(name)
            return real(*args, **kwargs)
        return wrapper

    for module, name in ((tempfile, "mkstemp"), (os, "fsync"), (os, "replace"), (torch, "save")):
        monkeypatch.setattr(module, name, counted(name, getattr(module, name)))

    def on_disk() -> tuple[list, list]:
        return json.loads((tmp_path / "history.json").read_text()), read_checkpoint(tmp_path)["history"]

    trainer.fit(1)  # one step, then its checkpoint (and history.json)
    events.clear()
    trainer.fit(1)
    operations = len(events)  # the file operations of one step's save
    assert operations >= 8
    outcomes = []
    for event in range(1, operations + 1):
        events.clear()
        kill_at["event"] = event
        with pytest.raises(_Killed):
            trainer.fit(1)  # the step is done (in memory), the kill hits its save
        kill_at["event"] = None
        file_history, checkpoint_history = on_disk()
        assert file_history[:len(checkpoint_history)] == checkpoint_history, f"history.json lags after kill {event}"
        outcomes.append(len(file_history) - len(checkpoint_history))
        trainer.save_checkpoint()  # a clean save: the pair is equal again
        assert on_disk()[0] == on_disk()[1] and len(on_disk()[1]) == trainer.step
    # equal after every kill but the one between the pair's two renames (then history.json is 1 step ahead)
    assert sorted(outcomes)[:-1] == [0] * (operations - 1) and outcomes.count(1) <= 1
    assert not list(tmp_path.rglob("*.tmp"))  # an interrupted write removes its temporary files

"""Multi-process training (toonlab.distributed) on the CPU with the gloo backend, two processes, a few steps."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toonlab.data.loader import UnpairedSampler
from toonlab.distributed import World, average_losses, launched_by_torchrun, process_seed

TESTS = Path(__file__).parent
STEPS = 3
PER_PROCESS_BATCH = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_worker(rank: int, world_size: int, port: int, out: str, batch_size: int, kind: str = "cyclegan",
                 config: str = "{}") -> None:
    """One rank: ``kind`` (fast preset) for STEPS steps, writing its weights and history to ``out``."""
    from toonlab.data.synthetic import SyntheticPortraits
    from toonlab.models import build_model
    from toonlab.train import Trainer

    torch.set_num_threads(1)
    if world_size > 1:
        torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                             world_size=world_size)
    torch.manual_seed(0)
    model = build_model(kind, "fast", batch_size=batch_size, **json.loads(config))
    dataset = SyntheticPortraits(size=int(model.config.image_size), length=32)
    trainer = Trainer(model, dataset, device="cpu", seed=0, progress=False,
                      run_dir=Path(out) / "run", checkpoint_every=STEPS)
    trainer.fit(STEPS)
    torch.save({"model": model.state_dict(), "history": trainer.history}, Path(out) / f"rank{rank}.pt")
    if world_size > 1:
        torch.distributed.destroy_process_group()


def run_workers(world_size: int, out: Path, batch_size: int, kind: str = "cyclegan", **config) -> None:
    port = free_port()
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); from test_distributed import train_worker; "
            "train_worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), "
            "sys.argv[6], sys.argv[7])")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(r), str(world_size), str(port), str(out),
                               str(batch_size), kind, json.dumps(config)], env=env, stderr=subprocess.PIPE, text=True)
             for r in range(world_size)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err[-3000:]


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory):
    """Two processes at batch 2 each, and one process at the combined batch 4, from the same seed."""
    two, one = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("one")
    run_workers(2, two, PER_PROCESS_BATCH)
    run_workers(1, one, 2 * PER_PROCESS_BATCH)
    return two, one


def test_sampler_ranks_split_the_one_process_stream():
    """Each step, rank r takes its own consecutive slice of the combined batch: together they are the one-process stream."""
    whole = iter(UnpairedSampler(7, 5, batch_size=4, seed=3, start_step=2))
    ranks = [iter(UnpairedSampler(7, 5, batch_size=2, seed=3, start_step=2, rank=r, world_size=2)) for r in range(2)]
    for _ in range(5):  # steps, crossing an epoch boundary
        expected = [next(whole) for _ in range(4)]
        got = [next(ranks[0]) for _ in range(2)] + [next(ranks[1]) for _ in range(2)]
        assert got == expected
    with pytest.raises(ValueError, match="rank 2 of world size 2"):
        UnpairedSampler(7, 5, 2, rank=2, world_size=2)


def test_one_process_world_changes_nothing():
    losses = {"G": 1.5, "D": 0.25}
    assert average_losses(losses, True, World()) == (losses, True)
    assert not World().distributed and World().is_main and not World(1, 2).is_main
    with pytest.raises(ValueError):
        World(rank=0, size=0)
    assert launched_by_torchrun({"WORLD_SIZE": "2"}) and not launched_by_torchrun({}) \
        and not launched_by_torchrun({"WORLD_SIZE": "1"})
    seeds = {process_seed(0, 0, r) for r in (1, 2, 3)} | {process_seed(0, 5, 1), process_seed(1, 0, 1)}
    assert len(seeds) == 5


def translations(state: dict, photos: torch.Tensor) -> torch.Tensor:
    from toonlab.models import build_model

    model = build_model("cyclegan", "fast")
    model.load_state_dict(state)
    return model.translate(photos)


def test_two_processes_equal_one_process_on_the_combined_batch(two_and_one):
    two, one = two_and_one
    rank0, rank1 = (torch.load(two / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    single = torch.load(one / "rank0.pt", weights_only=True)
    for name, value in single["model"].items():
        # the replicas stay identical (same averaged gradients, same Adam state)
        assert torch.equal(rank0["model"][name], rank1["model"][name]), name
        # and equal the one-process run up to the rounding of the reduction order. Adam divides each
        # gradient by its own running size, so where a true gradient is (near) zero it steps by up to a
        # learning rate along rounding noise: a convolution bias right before an InstanceNorm (true
        # gradient zero; it cannot change an output) may differ by a few learning rates (3 steps x 2e-4),
        # and so may a few weight elements (seen on an Intel CPU, whose convolutions round batch 2 and
        # batch 4 differently: 1-5 of 9,216 by up to 3.6e-5). Wrong averaging would move them all.
        diff = (rank0["model"][name] - value).abs()
        if name.endswith("bias"):
            assert diff.max() <= 1e-3, (name, diff.max())
        else:
            outside = diff > 1e-5 + 1e-4 * value.abs()
            assert outside.float().mean() <= 1e-3 and diff.max() <= STEPS * 2e-4, (name, int(outside.sum()), diff.max())
    photos = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    # images in [-1, 1]; the rounding above moves them by up to 2e-4 (Intel CPU), other data by far more
    torch.testing.assert_close(translations(rank0["model"], photos), translations(single["model"], photos),
                               rtol=0, atol=5e-4)
    assert len(rank0["history"]) == len(single["history"]) == STEPS
    for a, b, c in zip(rank0["history"], rank1["history"], single["history"]):
        for key in c:
            if key != "seconds":
                assert a[key] == b[key], key  # every process logs the same (averaged) losses
                assert a[key] == pytest.approx(c[key], rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("kind, batch, config", [("munit", 1, {}), ("xgan", 2, {"norm": "batch"})])
def test_replicas_stay_identical_for_models_called_through_encode_and_decode(tmp_path, kind, batch, config):
    """MUNIT and XGAN call their networks through encode/decode (where DDP's forward hooks see nothing);
    with XGAN's BatchNorm the running statistics stay rank 0's too."""
    run_workers(2, tmp_path, batch, kind, **config)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    start = build_model_state(kind, batch, config)
    assert any(not torch.equal(start[name], value) for name, value in rank0["model"].items())  # it trained
    if config.get("norm") == "batch":
        assert any("running_mean" in name for name in rank0["model"])
    for name, value in rank0["model"].items():
        assert torch.equal(value, rank1["model"][name]), name


def build_model_state(kind: str, batch: int, config: dict) -> dict:
    from toonlab.models import build_model

    torch.manual_seed(0)
    return build_model(kind, "fast", batch_size=batch, **config).state_dict()


def test_only_rank_0_writes_and_the_checkpoint_records_the_world(two_and_one):
    two, _ = two_and_one
    state = torch.load(two / "run" / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == STEPS and state["world_size"] == 2 and state["batch_size"] == PER_PROCESS_BATCH
    config = json.loads((two / "run" / "config.json").read_text())
    assert config["world_size"] == 2 and config["effective_batch_size"] == 2 * PER_PROCESS_BATCH
    assert config["batch_size_per_process"] == PER_PROCESS_BATCH and config["lr"] > 0
    assert [p.name for p in (two / "run").iterdir() if p.suffix == ".tmp"] == []


def test_torchrun_cli_trains_on_two_processes_and_resumes_in_one(tmp_path):
    """`torchrun --nproc_per_node 2 -m toonlab train ...` then `toonlab train --resume` in one process."""
    run = tmp_path / "run"
    env = {**{k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")},
           "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    common = ["--preset", "fast", "--quiet", "--no-eval", "--device", "cpu"]
    done = subprocess.run([*torchrun, "-m", "toonlab", "train", "cyclegan", *common, "--steps", "2",
                           "--run-dir", str(run)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("training cyclegan") == 1  # rank 0 alone speaks
    assert "2 processes x batch" in done.stdout
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 2 and state["world_size"] == 2
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    resumed = subprocess.run([sys.executable, "-m", "toonlab", "train", "cyclegan", "--resume", str(run), "--steps",
                              "1", "--quiet", "--no-eval", "--device", "cpu"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "trained by 2 process(es), this run has 1" in resumed.stdout
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 3 and state["world_size"] == 1
    assert len(state["history"]) == 3

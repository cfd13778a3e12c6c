"""Exact resume: a training run killed after a checkpoint and resumed with ``--resume`` ends
with the weights of an uninterrupted run; checkpoints are never half-written under their name;
``--resume`` without a checkpoint starts from scratch; the data stream continues."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from detectron2.data.samplers import TrainingSampler
from engine_testutils import (
    FULL_RUN_ITERS,
    REPO_ROOT,
    TRAIN_NET,
    describe,
    differing_tensors,
    load_checkpoint,
    run_train_net,
    train_args,
    train_net_env,
)
from torch import nn

from person_search.data import build_person_search_train_loader
from person_search.data.samplers import ResumableTrainingSampler
from person_search.engine import PersonSearchCheckpointer, PersonSearchTrainer, data_stream_config


# ------------------------------------------------------------------------------ data stream
def test_resumable_sampler_continues_the_stream():
    full = iter(TrainingSampler(10, seed=3))
    stream = [next(full) for _ in range(40)]
    resumed = iter(ResumableTrainingSampler(10, seed=3, start=17))
    assert [next(resumed) for _ in range(23)] == stream[17:]
    assert ResumableTrainingSampler(10, seed=3).seed == 3
    with pytest.raises(ValueError, match="start must be >= 0"):
        ResumableTrainingSampler(10, seed=3, start=-1)


def _file_names(batch: list[dict]) -> list[str]:
    return [os.path.basename(d["file_name"]) for d in batch]


def test_loader_started_at_an_iteration_serves_the_next_batches(tiny_cfg):
    # The stream's position comes with the config (DATALOADER.SEED / START_ITER), as the
    # Trainer passes it to build_train_loader(cls, cfg).
    full = iter(build_person_search_train_loader(data_stream_config(tiny_cfg, 5, 0)))
    batches = [_file_names(next(full)) for _ in range(5)]
    assert len({name for batch in batches for name in batch}) == 6  # all 6 frames visited
    torch.manual_seed(0)
    rng_before = torch.get_rng_state()
    resumed = iter(build_person_search_train_loader(data_stream_config(tiny_cfg, 5, 3)))
    assert [_file_names(next(resumed)) for _ in range(2)] == batches[3:]
    # Creating and reading the loader leaves the global torch RNG (the model's) untouched.
    assert torch.equal(torch.get_rng_state(), rng_before)


# ---------------------------------------------------------------------------- kill, resume
@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted_run(
    full_run, tiny_datasets_root, tmp_path
):
    reference_dir, _ = full_run
    out = tmp_path / "killed"
    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(TRAIN_NET), *train_args(out)],
            cwd=REPO_ROOT,
            env=train_net_env(tiny_datasets_root),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 600
        while proc.poll() is None and not (out / "last_checkpoint").exists():
            assert time.monotonic() < deadline, "no checkpoint after 600 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended before it was killed (exit code {proc.returncode}):\n"
        + log_path.read_text()[-3000:]
    )
    named = (out / "last_checkpoint").read_text()
    assert not (out / "model_final.pth").exists()
    killed_at = load_checkpoint(out / named)["iteration"]
    assert killed_at < FULL_RUN_ITERS - 1, named
    print(f"killed after {named} (iteration {killed_at}), resuming at {killed_at + 1}")

    resumed = run_train_net(train_args(out, "--resume"), tiny_datasets_root)
    assert resumed.returncode == 0, describe(resumed)
    logs = resumed.stdout + resumed.stderr
    assert f"Starting training from iteration {killed_at + 1}" in logs, describe(resumed)

    final = load_checkpoint(out / "model_final.pth")
    reference = load_checkpoint(reference_dir / "model_final.pth")
    assert final["iteration"] == reference["iteration"] == FULL_RUN_ITERS - 1
    # Bit-identical weights, buffers (BatchNorm statistics, the OIM lookup table and queue)
    # and optimizer state: one process, no data workers, deterministic CPU kernels.
    assert differing_tensors(final, reference) == []
    torch.testing.assert_close(
        final["trainer"]["_trainer"]["optimizer"],
        reference["trainer"]["_trainer"]["optimizer"],
        rtol=0,
        atol=0,
    )


# ------------------------------------------------------------------------- partial saves
def _save_and_die_mid_write(save_dir: str) -> None:
    """Child process: start saving model_0000005 and get SIGKILLed halfway through."""

    def dying_save(obj, f) -> None:
        f.write(b"PK\x03\x04 the first bytes of a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dying_save  # this process only
    PersonSearchCheckpointer(nn.Linear(3, 2), save_dir).save("model_0000005", iteration=5)


def test_checkpoint_killed_mid_write_is_never_named_last(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    PersonSearchCheckpointer(model, str(tmp_path)).save("model_0000002", iteration=2)
    child = multiprocessing.get_context("fork").Process(
        target=_save_and_die_mid_write, args=(str(tmp_path),)
    )
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    assert not (tmp_path / "model_0000005.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000002.pth"
    (partial,) = tmp_path.glob("model_0000005.pth.*.tmp")  # the bytes, under a temporary name
    assert partial.stat().st_size > 0
    resumed = PersonSearchCheckpointer(nn.Linear(3, 2), str(tmp_path))
    assert resumed.get_checkpoint_file() == str(tmp_path / "model_0000002.pth")
    assert resumed.resume_or_load("", resume=True)["iteration"] == 2
    torch.testing.assert_close(resumed.model.weight, model.weight)


def test_failed_save_leaves_no_file_and_keeps_the_tag(tmp_path, monkeypatch):
    checkpointer = PersonSearchCheckpointer(nn.Linear(3, 2), str(tmp_path))
    checkpointer.save("model_0000002", iteration=2)

    def failing_save(obj, f) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        checkpointer.save("model_0000005", iteration=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000002.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000002.pth"


# ------------------------------------------------------------------- resume, no checkpoint
@pytest.mark.usefixtures("single_thread")
def test_resume_without_checkpoint_starts_from_scratch(tiny_cfg):
    tiny_cfg.SOLVER.MAX_ITER = 2
    tiny_cfg.SOLVER.CHECKPOINT_PERIOD = 100
    trainer = PersonSearchTrainer(tiny_cfg)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.resume_or_load(resume=True)  # OUTPUT_DIR holds no checkpoint
    assert trainer.start_iter == 0
    trainer.train()
    final = load_checkpoint(os.path.join(tiny_cfg.OUTPUT_DIR, "model_final.pth"))
    assert final["iteration"] == 1
    # It trained from the random initialisation (and MODEL.WEIGHTS "" loaded nothing).
    changed = [k for k, v in final["model"].items() if not torch.equal(v, initial[k])]
    assert "roi_heads.box_predictor.cls_score.weight" in changed
    assert "roi_heads.reid_loss.lut" in changed

"""tools/train_net.py and its set-up: config errors, epoch schedules, optimizers, events and
progress of a run, ``--eval-only``."""

from __future__ import annotations

import argparse
import json
import logging
import math
import runpy
import sys

import pytest
import torch
from engine_testutils import (
    FULL_RUN_ITERS,
    OIM_TOY_CONFIG,
    TINY_OVERRIDES,
    TRAIN_NET,
    describe,
    run_train_net,
)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from person_search.config import get_cfg
from person_search.engine import (
    PersonSearchTrainer,
    build_optimizer,
    comparison_argument_parser,
    count_training_images,
    launch_main,
    load_config,
    mean_std,
    parse_comparison_args,
    resolve_schedule,
    seeded_config,
    setup,
)
from person_search.engine.defaults import EVAL_RESULTS_FILE


# ------------------------------------------------------------------------- config errors
def _run_script(monkeypatch, *argv: str) -> None:
    """Run tools/train_net.py in this process (it fails during set-up, before training)."""
    monkeypatch.setattr(sys, "argv", [str(TRAIN_NET), *argv])
    runpy.run_path(str(TRAIN_NET), run_name="__main__")


def test_unknown_override_key_is_named(monkeypatch):
    with pytest.raises(KeyError, match=r"Non-existent .*SOLVER\.NOT_A_KEY"):
        _run_script(monkeypatch, "--config-file", str(OIM_TOY_CONFIG), "SOLVER.NOT_A_KEY", "1")


def test_unknown_key_in_config_file_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'_BASE_: "{OIM_TOY_CONFIG}"\nMODEL:\n  OIM:\n    QUEUE_SIZ: 3\n')
    with pytest.raises(
        KeyError, match=r"bad\.yaml: Non-existent config key: MODEL\.OIM\.QUEUE_SIZ"
    ):
        load_config(str(bad))


def test_other_config_errors_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ValueError, match="SOLVER.MAX_ITER"):
        load_config(str(OIM_TOY_CONFIG), ["SOLVER.MAX_ITER", "'many'"])
    with pytest.raises(ValueError, match="odd length"):
        load_config(str(OIM_TOY_CONFIG), ["SOLVER.MAX_ITER"])


# ------------------------------------------------------------------------------ schedules
def _epoch_cfg():
    cfg = get_cfg()
    cfg.SOLVER.SCHEDULE_UNIT = "epoch"
    cfg.SOLVER.IMS_PER_BATCH = 5
    cfg.SOLVER.MAX_ITER = 20
    cfg.SOLVER.STEPS = (16,)
    cfg.SOLVER.WARMUP_ITERS = 100
    cfg.SOLVER.CHECKPOINT_PERIOD = 1
    cfg.TEST.EVAL_PERIOD = 2
    return cfg


def test_epoch_schedule_is_converted_by_hand():
    cfg = _epoch_cfg()
    cfg.freeze()
    out = resolve_schedule(cfg, num_images=11)
    # ceil(11 images / batch 5) = 3 iterations per epoch.
    assert out.SOLVER.MAX_ITER == 60 and tuple(out.SOLVER.STEPS) == (48,)
    assert out.SOLVER.CHECKPOINT_PERIOD == 3 and out.TEST.EVAL_PERIOD == 6
    assert out.SOLVER.WARMUP_ITERS == 100  # stays in iterations
    assert out.SOLVER.SCHEDULE_UNIT == "iter" and out.is_frozen()
    assert cfg.SOLVER.MAX_ITER == 20 and cfg.SOLVER.SCHEDULE_UNIT == "epoch"  # input untouched
    # 10 images / 5: exactly 2 per epoch; "iter" schedules pass through unchanged.
    assert resolve_schedule(_epoch_cfg(), num_images=10).SOLVER.STEPS == (32,)
    iters = get_cfg()
    assert resolve_schedule(iters) is iters
    bad = _epoch_cfg()
    bad.SOLVER.SCHEDULE_UNIT = "fortnight"
    with pytest.raises(ValueError, match="SOLVER.SCHEDULE_UNIT='fortnight'"):
        resolve_schedule(bad)


def test_setup_converts_epochs_with_the_training_set_size(tiny_cfg, tmp_path):
    # The tiny toy PRW has 6 training frames: with batch 2, 3 iterations per epoch.
    assert count_training_images(tiny_cfg) == 6
    out = tmp_path / "setup"
    args = argparse.Namespace(
        config_file=str(OIM_TOY_CONFIG),
        opts=[
            "DATASETS.TRAIN",
            "('toy_prw_train',)",
            "SOLVER.SCHEDULE_UNIT",
            "epoch",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.MAX_ITER",
            "4",
            "SOLVER.STEPS",
            "(3,)",
            "OUTPUT_DIR",
            str(out),
        ],  # fmt: skip
        eval_only=False,
    )
    cfg = setup(args)
    assert cfg.is_frozen() and cfg.SOLVER.MAX_ITER == 12 and tuple(cfg.SOLVER.STEPS) == (9,)
    assert "MAX_ITER: 12" in (out / "config.yaml").read_text()  # the converted schedule is saved
    unconverted = tiny_cfg.clone()
    unconverted.SOLVER.SCHEDULE_UNIT = "epoch"
    with pytest.raises(ValueError, match="resolve_schedule"):
        PersonSearchTrainer(unconverted)


# ----------------------------------------------------------------------------- optimizers
class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.norm = nn.BatchNorm1d(1)


def _optimizer_cfg(name: str):
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = name
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.WEIGHT_DECAY = 0.01
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.MOMENTUM = 0.9
    return cfg


def _one_step(optimizer, model: _Tiny, grad: list[float]) -> torch.Tensor:
    before = model.linear.weight.detach().clone()
    model.linear.weight.grad = torch.tensor([grad])
    optimizer.step()
    return model.linear.weight.detach() - before


def test_sgd_selected_and_its_first_step_by_hand():
    torch.manual_seed(0)
    model = _Tiny()
    optimizer = build_optimizer(_optimizer_cfg("SGD"), model)
    assert type(optimizer).__name__ == "SGD"
    assert optimizer.defaults["momentum"] == 0.9
    w = model.linear.weight.detach().clone()[0]
    # First SGD step: the momentum buffer is the gradient g + wd * w; step = -lr * that.
    delta = _one_step(optimizer, model, [0.5, -2.0])
    expected = -0.1 * (torch.tensor([0.5, -2.0]) + 0.01 * w)
    torch.testing.assert_close(delta[0], expected)
    # Normalisation parameters get SOLVER.WEIGHT_DECAY_NORM (0), weights SOLVER.WEIGHT_DECAY.
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay[id(model.norm.weight)] == 0.0 and decay[id(model.linear.weight)] == 0.01


def test_adam_selected_and_its_first_step_by_hand():
    torch.manual_seed(0)
    model = _Tiny()
    cfg = _optimizer_cfg("Adam")
    cfg.SOLVER.WEIGHT_DECAY = 0.0
    cfg.SOLVER.ADAM_BETAS = (0.8, 0.99)
    optimizer = PersonSearchTrainer.build_optimizer(cfg, model)
    assert type(optimizer).__name__ == "Adam" and optimizer.defaults["betas"] == (0.8, 0.99)
    # First Adam step: bias-corrected m / sqrt(v) = g / |g|, so the step is -lr * sign(g).
    delta = _one_step(optimizer, model, [0.5, -2.0])
    torch.testing.assert_close(delta[0], torch.tensor([-0.1, 0.1]), rtol=0, atol=1e-6)
    assert type(build_optimizer(_optimizer_cfg("AdamW"), _Tiny())).__name__ == "AdamW"


def test_bad_optimizer_settings_are_named():
    with pytest.raises(ValueError, match=r"SOLVER.OPTIMIZER='RMSprop' is not one of"):
        build_optimizer(_optimizer_cfg("RMSprop"), _Tiny())
    cfg = _optimizer_cfg("Adam")
    cfg.SOLVER.ADAM_BETAS = (0.9,)
    with pytest.raises(ValueError, match="SOLVER.ADAM_BETAS"):
        build_optimizer(cfg, _Tiny())


def test_amp_without_cuda_is_refused(tiny_cfg):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    tiny_cfg.SOLVER.AMP.ENABLED = True
    with pytest.raises(ValueError, match="SOLVER.AMP.ENABLED"):
        PersonSearchTrainer(tiny_cfg)


# ------------------------------------------------------------------ runs of the real CLI
@pytest.mark.slow
def test_run_writes_json_and_tensorboard_events_and_prints_eta(full_run):
    out, proc = full_run
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    last = records[-1]
    assert last["iteration"] == FULL_RUN_ITERS - 1
    for key in ("total_loss", "loss_oim", "loss_cls", "lr", "time", "eta_seconds"):
        assert math.isfinite(last[key]), key
    (events,) = out.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert {"total_loss", "loss_oim", "lr"} <= set(accumulator.Tags()["scalars"])
    steps = [e.step for e in accumulator.Scalars("total_loss")]
    assert steps[-1] == FULL_RUN_ITERS - 1
    logs = proc.stdout + proc.stderr
    assert f"eta: 0:00:00  iter: {FULL_RUN_ITERS - 1}" in logs, describe(proc)


@pytest.mark.slow
def test_eval_only_with_weights_gives_the_metrics(full_run, tiny_datasets_root, tmp_path):
    trained, _ = full_run
    out = tmp_path / "eval"
    args = ["--config-file", str(OIM_TOY_CONFIG), "--eval-only", *TINY_OVERRIDES]
    overrides = [
        "DATASETS.TEST", "('toy_prw_test',)",
        "MODEL.WEIGHTS", str(trained / "model_final.pth"),
        "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    proc = run_train_net([*args, *overrides], tiny_datasets_root)
    assert proc.returncode == 0, describe(proc)
    logs = proc.stdout + proc.stderr
    assert f"Loading from {trained / 'model_final.pth'}" in logs, describe(proc)
    assert "Evaluation results" in logs
    results = json.loads((out / EVAL_RESULTS_FILE).read_text())
    assert set(results) == {"search", "detection"}
    for key in ("mAP", "top1", "all/mAP", "cross_camera/mAP"):
        assert 0.0 <= results["search"][key] <= 1.0, key
    assert {"AP", "recall"} <= set(results["detection"])


@pytest.mark.slow
def test_cli_unknown_key_exits_with_the_key(tiny_datasets_root):
    proc = run_train_net(
        ["--config-file", str(OIM_TOY_CONFIG), "SOLVER.NOT_A_KEY", "1"], tiny_datasets_root
    )
    assert proc.returncode != 0
    assert "SOLVER.NOT_A_KEY" in proc.stderr, describe(proc)


def test_launch_main_passes_trainer_and_config_hook(monkeypatch, tmp_path):
    """launch_main runs main(args, trainer_cls, add_config) in this process for one GPU / CPU:
    the project's config hook is applied before the file's keys are read, its package's logger
    is set up, and the trainer given (not the TASK's) builds the model."""
    calls = []

    def add_config(cfg):
        calls.append("add_config")
        cfg.MODEL.LAUNCH_MAIN_TEST_KEY = 7

    class Stop(Exception):
        pass

    class RecordingTrainer(PersonSearchTrainer):
        @classmethod
        def build_model(cls, cfg):
            calls.append(("build_model", cfg.MODEL.LAUNCH_MAIN_TEST_KEY))
            raise Stop

    argv = ["--config-file", str(OIM_TOY_CONFIG), "--eval-only", "OUTPUT_DIR", str(tmp_path)]
    project_logger = logging.getLogger(add_config.__module__.split(".")[0])
    assert not project_logger.handlers
    with pytest.raises(Stop):
        launch_main(RecordingTrainer, add_config, argv)
    assert calls == ["add_config", ("build_model", 7)]
    # the config hook's package logs like the library (console and OUTPUT_DIR/log.txt)
    assert any(
        str(getattr(getattr(h, "stream", None), "name", "")).startswith(str(tmp_path))
        for h in project_logger.handlers
    )


def test_seeded_config_and_mean_std(tmp_path):
    """A toy comparison's run: the seed, the overrides and OUTPUT_DIR applied, no periodic
    evaluation whatever the overrides say, frozen; the README cell is mean ± sample std."""
    out = str(tmp_path)
    cfg = seeded_config(
        str(OIM_TOY_CONFIG), 7, out, ["SOLVER.MAX_ITER", "3", "TEST.EVAL_PERIOD", "5"]
    )
    assert cfg.SEED == 7 and cfg.SOLVER.MAX_ITER == 3 and out == cfg.OUTPUT_DIR
    assert cfg.TEST.EVAL_PERIOD == 0 and cfg.is_frozen()
    assert mean_std([1.0, 2.0, 6.0]) == "3.0 ± 2.6"  # sample std: sqrt(7)
    assert mean_std([4.25]) == "4.2 ± nan"


def test_comparison_command_line():
    """The toy comparisons' shared command line: defaults, a script's own option, and a
    leading "--" of the overrides taken as the separator."""
    parser = comparison_argument_parser("toy rows", "output/x_toy")
    parser.add_argument("--models", nargs="+", default=["a"])
    args = parse_comparison_args(parser, ["--models", "a", "b", "--", "SOLVER.MAX_ITER", "2"])
    assert args.models == ["a", "b"] and args.opts == ["SOLVER.MAX_ITER", "2"]
    assert args.output == "output/x_toy" and args.seeds == [0, 1, 2] and args.threads == 0
    assert parse_comparison_args(parser, ["--seeds", "4"]).opts == []

"""FSDP and HSDP train exactly like DDP: two gloo processes under torchrun, the same tiny
run with each `parallelism`, the same losses and gradient norms step by step, and the same
final weights under the same names.

The tiny runs go through this file's `main` (run as a module under torchrun): the tiny
pretraining run plus a callback that, after the last step, writes the final model state
(gathered from the shards under fsdp/hsdp), the state of rank 0's full copy that in-loop
evaluation runs (`full_model`), and the state `load_state_dict` restores into a model whose
weights were wiped; the test compares the three.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch.distributed.tensor import DTensor

from models.train import distributed, pretrain, tiny_run
from models.train.callbacks.callback import Callback

COMPARED = ("loss", "patch_disc_a", "patch_disc_b", "infonce", "grad_norm")
STEPS = 5
FINAL_STATE = "final_model.pt"
RELOADED_STATE = "reloaded_model.pt"
FULL_COPY_STATE = "full_model.pt"
HOLDINGS = "holdings.json"
TINY_LR = inspect.signature(tiny_run.tiny_config).parameters["lr"].default


# -- the torchrun worker -------------------------------------------------------------------


class SaveAndReloadFinalState(Callback):
    """After training: rank 0 writes the model state; then every rank wipes its weights,
    loads the full state back (rank 0's, broadcast) and rank 0 writes the state again."""

    def post_train(self) -> None:
        module = self.trainer.train_module
        run = Path(self.trainer.run_dir.path)
        # What each rank holds: parameter elements in its memory and the mesh they live on.
        holdings = distributed.all_gather_object(
            {
                "elements": sum(_local(p).numel() for p in module.model.parameters()),
                "mesh": _mesh_shape(next(module.model.parameters())),
            }
        )
        if self.trainer.is_main:
            (run / HOLDINGS).write_text(json.dumps(holdings))
        # A copy: like nn.Module.state_dict(), the state may share storage with the live
        # parameters (under HSDP with 1 shard per group the "gathered" tensors are the
        # parameters' own), and the parameters are wiped below.
        state = copy.deepcopy(distributed.broadcast_object(module.state_dict()))
        if self.trainer.is_main:
            torch.save(state["model"], run / FINAL_STATE)
        with module.full_model() as full:  # what the in-loop evaluation runs on rank 0
            if self.trainer.is_main:
                torch.save(full.state_dict(), run / FULL_COPY_STATE)
        with torch.no_grad():
            for parameter in module.model.parameters():
                parameter.zero_()
        module.load_state_dict(state)
        reloaded = module.state_dict()
        if self.trainer.is_main:
            torch.save(reloaded["model"], run / RELOADED_STATE)


def _local(parameter: torch.Tensor) -> torch.Tensor:
    return parameter.to_local() if isinstance(parameter, DTensor) else parameter


def _mesh_shape(parameter: torch.Tensor) -> list[int] | None:
    return list(parameter.device_mesh.shape) if isinstance(parameter, DTensor) else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one tiny run for fsdp_test")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run-root", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--parallelism", required=True)
    parser.add_argument("--shard-degree", type=int, default=None)
    parser.add_argument("--target", choices=("projection", "ema"), default="projection")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # reductions over threads sum in a thread-dependent order
    config = tiny_run.tiny_config(
        args.data,
        args.run_root,
        args.name,
        STEPS,
        # 8 samples over 2 ranks in microbatches of 2: the first microbatch of each rank
        # runs without gradient sync, the second reduces.
        global_batch_size=8,
        microbatch_size=2,
        parallelism=args.parallelism,
        shard_degree=args.shard_degree,
    )
    if args.target == "ema":
        # A moving EMA target whose tokens are its full encoder's output: the target's
        # blocks are sharded too and update_target runs on shards every step.
        model = dataclasses.replace(
            config.model, target="ema", ema_decay=(0.5, 0.9), ema_target_output="encoder"
        )
        config = dataclasses.replace(config, model=model)
    pretrain.train(config, [SaveAndReloadFinalState()])
    return 0


# -- the tests -----------------------------------------------------------------------------


def _torchrun(data: Path, runs: Path, name: str, *args: str) -> Path:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "models.train.fsdp_test", "--data", str(data), "--run-root", str(runs)),
        *("--name", name, *args),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return runs / "tiny" / name


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_training(run: Path, baseline: Path) -> None:
    got, want = _records(run), _records(baseline)
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, STEPS + 1))
    for a, b in zip(got, want, strict=True):
        for key in COMPARED:
            assert a[key] == pytest.approx(b[key], abs=1e-5), (run.name, a["step"], key)
    final = torch.load(run / FINAL_STATE, weights_only=True)
    baseline_final = torch.load(baseline / FINAL_STATE, weights_only=True)
    assert final.keys() == baseline_final.keys()
    for key, value in baseline_final.items():
        got, want = final[key].clone(), value.clone()
        keys = _key_bias_rows(key, want)
        if keys is not None:
            # The key bias gets a zero gradient (softmax ignores a constant added to one
            # query's logits), so its gradient is rounding noise, which AdamW scales into
            # steps of up to ~lr whatever the noise: DDP and FSDP round differently and
            # these rows drift apart by up to ~1e-4 here. Bound them by the learning rate
            # summed over the steps (3e-3 x 5), compare the rest exactly.
            assert (got[keys] - want[keys]).abs().max() < STEPS * TINY_LR, key
            got[keys] = want[keys] = 0
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5, msg=key)
    for copy_name in (RELOADED_STATE, FULL_COPY_STATE):
        copied = torch.load(run / copy_name, weights_only=True)
        assert copied.keys() == final.keys(), copy_name
        for key, value in final.items():
            assert torch.equal(copied[key], value), (copy_name, key)


def _key_bias_rows(key: str, value: torch.Tensor) -> slice | None:
    """The key rows of an attention bias (models/nn/attention.py: qkv is [q; k; v] and the
    cross-attention kv is [k; v]), None for any other state entry."""
    if key.endswith("attn.qkv.bias"):
        width = value.shape[0] // 3
        return slice(width, 2 * width)
    if key.endswith("attn.kv.bias"):
        width = value.shape[0] // 2
        return slice(0, width)
    return None


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run.write_tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def ddp_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _torchrun(data, tmp_path_factory.mktemp("runs"), "ddp", "--parallelism", "ddp")


@pytest.mark.parametrize(
    "name, args, mesh, shards",
    [
        ("fsdp", ("--parallelism", "fsdp"), [2], 2),
        # 2-D meshes: one group of 2 shards ((1, 2), reduce-scatter within the group), and
        # 2 replicas of 1 shard ((2, 1), gradients all-reduced across the replicas).
        ("hsdp_1x2", ("--parallelism", "hsdp", "--shard-degree", "2"), [1, 2], 2),
        ("hsdp_2x1", ("--parallelism", "hsdp", "--shard-degree", "1"), [2, 1], 1),
    ],
)
def test_sharded_runs_match_ddp_losses_grad_norms_and_final_weights(
    data: Path,
    ddp_run: Path,
    tmp_path: Path,
    name: str,
    args: tuple[str, ...],
    mesh: list[int],
    shards: int,
) -> None:
    run = _torchrun(data, tmp_path, name, *args)
    _assert_same_training(run, ddp_run)
    # It really was sharded (not DDP under another name): the shards of a group add up to
    # one full model, DDP's count on each rank, and a rank holds about 1/shards of it (dim
    # 0 splits like torch.chunk: rank 0 gets the odd rows, within 1% here).
    (full,) = {rank["elements"] for rank in json.loads((ddp_run / HOLDINGS).read_text())}
    held = json.loads((run / HOLDINGS).read_text())
    assert [rank["mesh"] for rank in held] == [mesh, mesh]
    assert sum(rank["elements"] for rank in held) == full * 2 // shards
    assert max(rank["elements"] for rank in held) < full / shards * 1.01


def test_fsdp_with_a_moving_ema_encoder_target_matches_ddp(data: Path, tmp_path: Path) -> None:
    ema = ("--target", "ema")
    ddp = _torchrun(data, tmp_path, "ema_ddp", "--parallelism", "ddp", *ema)
    fsdp = _torchrun(data, tmp_path, "ema_fsdp", "--parallelism", "fsdp", *ema)
    # The targets of step k come from k - 1 EMA updates (decay 0.5 at first: a large move),
    # so equal losses at steps 2..5 and equal final target weights mean update_target ran
    # on the shards as it did on DDP's full copies.
    _assert_same_training(fsdp, ddp)


if __name__ == "__main__":
    sys.exit(main())

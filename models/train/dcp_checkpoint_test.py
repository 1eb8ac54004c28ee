"""Sharded state with torch.distributed.checkpoint in one process: written, read whole and
restored exactly; the index and non-tensor values are read without running planted code.
(Several ranks: models/train/dcp_resume_test.py.)"""

import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch import nn

from models.train import dcp_checkpoint


class _Planted:
    """Unpickling it creates the folder `marker`: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _trained() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.02)
    for _ in range(2):
        model(torch.randn(5, 3)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def test_a_written_state_restores_model_and_optimizer_exactly(tmp_path: Path) -> None:
    model, optimizer = _trained()
    dcp_checkpoint.write(tmp_path / "sharded", model, optimizer)
    torch.manual_seed(1)
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=5.0)
    dcp_checkpoint.restore(tmp_path / "sharded", fresh, fresh_optimizer)
    for (name, want), have in zip(
        model.state_dict().items(), fresh.state_dict().values(), strict=True
    ):
        assert torch.equal(want, have), name
    want, have = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert have["param_groups"] == want["param_groups"]  # lr 1e-3 again, not 5
    for index, state in want["state"].items():
        for key, value in state.items():
            assert torch.equal(have["state"][index][key], value), (index, key)


def test_the_whole_state_reads_back_by_parameter_name_without_a_process_group(
    tmp_path: Path,
) -> None:
    model, optimizer = _trained()
    dcp_checkpoint.write(tmp_path, model, optimizer)
    weights = dcp_checkpoint.read_whole(tmp_path)
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[name], value) for name, value in model.state_dict().items())
    optim = dcp_checkpoint.read_whole(tmp_path, dcp_checkpoint.OPTIM_KEY)
    assert sorted(optim["state"]) == sorted(name for name, _ in model.named_parameters())
    assert torch.equal(
        optim["state"]["2.bias"]["exp_avg"], optimizer.state[model[2].bias]["exp_avg"]
    )
    assert optim["param_groups"][0]["lr"] == 1e-3 and optim["param_groups"][0]["betas"] == (
        0.9,
        0.999,
    )
    assert dcp_checkpoint.tensor_bytes(tmp_path) == 4 * sum(p.numel() for p in model.parameters())


def test_a_planted_index_is_refused_without_running(tmp_path: Path) -> None:
    model, optimizer = _trained()
    dcp_checkpoint.write(tmp_path, model, optimizer)
    marker = tmp_path / "code-ran"
    with open(tmp_path / dcp_checkpoint.INDEX_FILE, "wb") as handle:
        pickle.dump(_Planted(marker), handle)
    with pytest.raises(dcp_checkpoint.UnsafeShardedStateError, match="posix.mkdir"):
        dcp_checkpoint.read_whole(tmp_path)
    with pytest.raises(dcp_checkpoint.UnsafeShardedStateError):
        dcp_checkpoint.restore(tmp_path, model, optimizer)
    assert not marker.exists()


def test_the_index_reaches_no_module_through_getattr(tmp_path: Path) -> None:
    # getattr(<an allowed function>, "__globals__") would reach os; only DCP's enum members
    # may be fetched with getattr.
    class _Escape:
        def __reduce__(self):
            return (getattr, (torch.Size, "__init__"))

    with open(tmp_path / dcp_checkpoint.INDEX_FILE, "wb") as handle:
        pickle.dump(_Escape(), handle)
    with pytest.raises(dcp_checkpoint.UnsafeShardedStateError, match="not a DCP enum member"):
        dcp_checkpoint.read_metadata(tmp_path)


def test_a_planted_non_tensor_value_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    # What DCP writes for a non-tensor value is torch.save's pickle of it; DCP's own loader
    # would unpickle it with weights_only=False.
    state = {"model": {"weight": torch.ones(2), "note": _Planted(marker)}}
    with warnings.catch_warnings():  # DCP's "assuming a single process": yes
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=tmp_path, no_dist=True)
    with pytest.raises(dcp_checkpoint.UnsafeShardedStateError, match="model.note"):
        dcp_checkpoint.read_whole(tmp_path)
    assert not marker.exists()

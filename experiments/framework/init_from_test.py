"""`--init_from`: a new run starts from a checkpoint, a run folder, a state dict file or a
reference release; weights that do not fit are refused with one line naming the key."""

from __future__ import annotations

import dataclasses
import importlib
import io
from pathlib import Path

import pytest
import torch

from experiments.framework import init_from, testing, training
from experiments.framework.cli import run
from experiments.framework.experiment_config import ExperimentConfig
from models.config import serialization
from models.convert.reference_checkpoint import reference_state_dict_of
from models.convert.reference_v1_1 import reference_v1_1_state_dict_of
from models.convert.reference_v1_2 import reference_v1_2_state_dict_of
from models.latent_mim import sizes
from models.latent_mim.v1_1 import LatentMIMV11Config
from models.latent_mim.v1_2 import LatentMIMV12Config
from models.train.callbacks.callback import Callback, Phase

BASE = importlib.import_module("experiments.base")


class WeightsAtStart(Callback):
    """Copies the model's state dict when training starts (after init_from loaded)."""

    phase = Phase.OBSERVE

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def pre_train(self) -> None:
        model = self.trainer.train_module.model
        self.state = {key: value.detach().clone() for key, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.write_tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


def _tiny(tiny_data: Path, runs: Path, run_name: str, **changes) -> ExperimentConfig:
    """base's config at tiny size for one step, without the in-loop evaluation (it took 80
    of a tiny run's 84 s on the loaded 2-core machine and scores nothing these tests read)."""
    config, _ = testing.experiment_config(BASE, run_name=run_name)
    tiny = testing.tiny_config(config, tiny_data, runs)
    callbacks = dict(tiny.trainer.callbacks)
    callbacks["evaluator"] = dataclasses.replace(callbacks["evaluator"], enabled=False)
    trainer = dataclasses.replace(tiny.trainer, callbacks=callbacks)
    return dataclasses.replace(tiny, trainer=trainer, **changes)


@pytest.fixture(scope="module")
def source_run(tiny_data: Path, runs: Path) -> training.TrainResult:
    """One tiny base step: the run whose weights the other runs start from."""
    return training.train(_tiny(tiny_data, runs, "source"))


def _checkpoint_model(result: training.TrainResult) -> dict[str, torch.Tensor]:
    return init_from.read_weights(str(result.checkpoints[-1]), None).state


def test_a_new_run_starts_from_another_runs_checkpoint_and_records_it(
    source_run: training.TrainResult, tiny_data: Path, runs: Path
) -> None:
    step_dir = source_run.checkpoints[-1]
    config = _tiny(tiny_data, runs, "from_checkpoint", init_from=str(step_dir))
    seen = WeightsAtStart()
    result = training.train(config, callbacks=[seen])
    expected = _checkpoint_model(source_run)
    assert seen.state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(seen.state[key], value), f"{key} is not the checkpoint's"
    # The seed alone gives other weights: the start really came from the checkpoint.
    torch.manual_seed(config.trainer.seed)
    fresh = config.model.build().state_dict()
    assert any(not torch.equal(fresh[key], expected[key]) for key in expected)
    assert serialization.load(result.run_dir / "config.yaml").init_from == str(step_dir)


def test_a_run_folder_stands_for_its_newest_checkpoint(
    source_run: training.TrainResult,
) -> None:
    weights = init_from.read_weights(str(source_run.run_dir), None)
    assert weights.resolved == source_run.checkpoints[-1] and weights.layout == "checkpoint"


def test_a_relative_path_is_read_from_the_folder_bazel_run_was_typed_in(
    source_run: training.TrainResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `bazel run` starts the command in its runfiles, not where the user typed the path.
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(source_run.run_dir.parent))
    monkeypatch.chdir("/")
    weights = init_from.read_weights(source_run.run_dir.name, None)
    assert weights.resolved == source_run.checkpoints[-1] and weights.layout == "checkpoint"


def test_a_state_dict_file_is_read_bare_or_under_model(
    source_run: training.TrainResult, tiny_data: Path, runs: Path, tmp_path: Path
) -> None:
    state = _checkpoint_model(source_run)
    config = _tiny(tiny_data, runs, "unused")
    for name, saved in (("bare.pt", state), ("wrapped.pt", {"model": state, "step": 1})):
        torch.save(saved, tmp_path / name)
        weights = init_from.load_checked(str(tmp_path / name), config.model)
        assert weights.layout == "state_dict"
        assert all(torch.equal(weights.state[key], state[key]) for key in state)


def _v1_1_model(tiny_model):
    return testing.tiny_model(LatentMIMV11Config.from_size("nano"))


def _v1_2_model(tiny_model):
    """v1.2 with a register token and qk-norm, so every key the v1.2 converter maps (RoPE
    frequencies, q/k norms, registers) is in the release."""
    config = testing.tiny_model(LatentMIMV12Config.from_size("nano"))
    encoder = dataclasses.replace(config.encoder, num_register_tokens=1, qk_norm=True)
    decoder = dataclasses.replace(config.decoder, qk_norm=True)
    return dataclasses.replace(config, encoder=encoder, decoder=decoder)


@pytest.mark.parametrize(
    "version, model_of, export",
    [
        ("v1", lambda tiny_model: tiny_model, reference_state_dict_of),
        ("v1_1", _v1_1_model, reference_v1_1_state_dict_of),
        ("v1_2", _v1_2_model, reference_v1_2_state_dict_of),
    ],
)
def test_a_reference_release_is_converted_into_our_naming(
    version: str, model_of, export, tiny_data: Path, runs: Path, tmp_path: Path
) -> None:
    """A release of each version (written by our exporter: the reference's layout) reads
    back as exactly the weights it was written from."""
    config = _tiny(tiny_data, runs, "unused")
    config = dataclasses.replace(config, model=model_of(config.model))
    torch.manual_seed(3)
    model = config.model.build()
    release = tmp_path / f"OlmoEarth-{version}-Tiny"
    release.mkdir()
    torch.save(export(model), release / init_from.REFERENCE_WEIGHTS_FILE)
    weights = init_from.load_checked(str(release), config.model)
    assert weights.layout == "reference"
    ours = model.state_dict()
    assert weights.state.keys() == ours.keys()
    assert all(torch.equal(weights.state[key], ours[key]) for key in ours)


def test_a_v1_2_release_is_refused_by_a_v1_1_run_naming_the_rope_keys(tmp_path: Path) -> None:
    """The version comes from the run's model: a v1.1 run does not drop a release's RoPE
    frequencies, it refuses the release in one line that names them."""
    v1_2 = testing.tiny_model(LatentMIMV12Config.from_size("nano"))
    torch.save(reference_v1_2_state_dict_of(v1_2.build()), tmp_path / "weights.pth")
    v1_1 = testing.tiny_model(LatentMIMV11Config.from_size("nano"))
    with pytest.raises(init_from.InitFromError) as error:
        init_from.load_checked(str(tmp_path), v1_1)
    message = str(error.value)
    assert "\n" not in message and error.value.exit_code == 2
    assert "does not convert for LatentMIMV11Config" in message
    assert "encoder.blocks.0.attn.rope_mixed_freqs" in message


def test_weights_of_another_size_are_refused_naming_the_first_key(
    source_run: training.TrainResult, tiny_data: Path, runs: Path
) -> None:
    config = _tiny(tiny_data, runs, "unused")
    wider = dataclasses.replace(config, model=sizes.resized(config.model, "nano"))
    with pytest.raises(init_from.InitFromError) as error:
        init_from.load_checked(str(source_run.checkpoints[-1]), wider.model)
    message = str(error.value)
    assert "\n" not in message and error.value.exit_code == 2
    first = next(iter(init_from.expected_state(wider.model)))
    assert f"does not fit this run's model (LatentMIMConfig): {first} has shape" in message
    assert "more keys" in message


def test_fit_problems_name_missing_extra_and_reshaped_keys() -> None:
    weights = {"a": torch.zeros(2), "b": torch.zeros(3), "extra": torch.zeros(1)}
    problems = init_from.fit_problems(weights, {"a": (2,), "b": (4,), "c": (1,)})
    assert problems == [
        "b has shape [3] in the weights, [4] in the model",
        "c is missing from the weights",
        "extra is in the weights but not in the model",
    ]


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda tmp: tmp / "nowhere", "no such file or folder"),
        (lambda tmp: tmp, "neither a checkpoint"),
        (lambda tmp: _write(tmp / "notes.txt", b"not torch"), "does not load as a torch state"),
        (lambda tmp: _save(tmp / "list.pt", [1, 2]), "holds a list, not a state dict"),
    ],
)
def test_what_is_not_weights_is_refused_in_one_line(make, said: str, tmp_path: Path) -> None:
    with pytest.raises(init_from.InitFromError, match=said) as error:
        init_from.read_weights(str(make(tmp_path)), None)
    assert "\n" not in str(error.value) and str(error.value).startswith("--init_from=")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, value) -> Path:
    torch.save(value, path)
    return path


def test_a_run_that_can_resume_does_not_read_the_weights_again(
    source_run: training.TrainResult, tiny_data: Path, runs: Path
) -> None:
    """The resumed run continues from its own checkpoint, so even a path that no longer
    exists does not stop it."""
    again = _tiny(tiny_data, runs, "source", init_from="/gone/step_9")
    assert init_from.callbacks_for(again) == []
    with pytest.raises(init_from.InitFromError, match="no such file"):
        init_from.callbacks_for(dataclasses.replace(again, run_name="new", trainer=_renamed(again)))


def _renamed(config: ExperimentConfig):
    run_dir = dataclasses.replace(config.trainer.run, name="never_trained")
    return dataclasses.replace(config.trainer, run=run_dir)


def test_the_train_command_refuses_weights_that_do_not_fit_before_touching_the_run(
    source_run: training.TrainResult, tiny_data: Path, tmp_path: Path, monkeypatch
) -> None:
    """Through the command line: exit 2, one line, no run folder; the flag is recorded as
    any override (the refusal happens before anything is written)."""
    monkeypatch.setenv("TERRA_RUN_ROOT", str(tmp_path / "runs"))
    monkeypatch.setenv("BUILD_WORKSPACE_DIRECTORY", str(tmp_path / "ws"))
    builders = testing.tiny_builders(importlib.import_module("experiments.nano"), tiny_data)
    wider = dataclasses.replace(builders, model_config_builder=_nano_model(builders))
    out, err = io.StringIO(), io.StringIO()
    argv = ["train", "nano_init", "local", f"--init_from={source_run.run_dir}"]
    status = run(wider, argv, "nano", out, err)
    assert status == 2, err.getvalue()
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --init_from=")
    assert "does not fit this run's model" in lines[0]
    assert not list((tmp_path / "runs").rglob("config.yaml"))


def _nano_model(builders):
    def build(common):
        return sizes.resized(builders.model_config_builder(common), "nano")

    return build

"""`train <run> <cluster> --init_from=PATH`: a new run starts from trained weights.

For fine-tuning and continued pretraining. `init_from` is a field of the experiment config
(experiment_config.ExperimentConfig), so the flag is an ordinary override: it is recorded in
overrides.txt and config.yaml, and a run rebuilt from its config.yaml starts from the same
weights. What PATH may be (`read_weights` tells them apart):

    runs/<project>/<run>/checkpoints/step_<N>   one of our checkpoints (plain or sharded):
                                                its model part
    runs/<project>/<run>                        a run folder: its newest complete checkpoint
    model.pt (any file name)                    a state dict of our model (`torch.save`d;
                                                also {"model": state dict})
    weights.pth, or a folder holding it         a reference OlmoEarth v1, v1.1 or v1.2
                                                release (keys encoder.*, decoder.*,
                                                target_encoder.*), converted by
                                                models/convert for the run's model version

The weights must fit the run's model config exactly: every key present, none extra, every
shape equal. Otherwise `train` refuses to start with one line naming the first key that does
not fit (exit 2), before the run folder is touched. Only the weights are taken: the optimizer
starts fresh and the schedule starts at step 1 with its warmup. A resumed run ignores
`init_from`: its own checkpoint holds the weights it continues from.

A reference release is converted for the version of the run's model (`_reference_converter`:
v1.2 for the v1_2_* recipes, v1.1 for v1_1_*, v1 otherwise); started from it, the run's model
gives the reference model's encoder tokens and pooled embeddings within 1e-5 in fp32
(init_from_reference_test.py, against olmoearth-pretrain 0.1.2 at nano for each version).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from experiments.framework.errors import CommandError
from launcher import api as launcher
from models.train import checkpoint
from models.train.callbacks.callback import Callback, Phase

logger = logging.getLogger(__name__)

REFERENCE_WEIGHTS_FILE = "weights.pth"
"""The file name of a released reference checkpoint (beside its config.json)."""

REFERENCE_PREFIX = "target_encoder."
"""Only the reference's LatentMIM names its target this way (ours: `target.`)."""


class InitFromError(CommandError):
    """`--init_from` names weights that cannot be read or do not fit the model; exit 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


@dataclasses.dataclass
class InitWeights:
    """Weights read for a run's start, in our model's naming.

    Attributes:
        source: what `--init_from` named.
        resolved: the file or checkpoint folder actually read.
        layout: "checkpoint" (ours, a training checkpoint), "state_dict" (ours, a file) or
            "reference" (converted from the reference's layout).
        state: parameter and buffer name -> tensor, on the CPU.
    """

    source: str
    resolved: Path
    layout: str
    state: dict[str, Tensor]

    def describe(self) -> str:
        return f"{self.resolved} ({self.layout}, {len(self.state)} tensors)"


def _torch_file(path: Path, source: str) -> Mapping[str, Any]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one line
        raise InitFromError(
            f"--init_from={source}: {path} does not load as a torch state dict "
            f"({type(error).__name__}: {' '.join(str(error).split())[:200]})"
        ) from error
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, Tensor) for value in loaded.values()
    ):
        raise InitFromError(
            f"--init_from={source}: {path} holds a {type(loaded).__name__}, not a state dict "
            "(name -> tensor); give a checkpoint folder, a run folder or a weights file"
        )
    return loaded


def _checkpoint_weights(path: Path, source: str) -> dict[str, Tensor]:
    try:
        return dict(checkpoint.load(path, parts=["model"])["model"])
    except checkpoint.UnreadableCheckpointError as error:
        raise InitFromError(f"--init_from={source}: {error}") from error


def _resolve(source: str) -> tuple[Path, str]:
    """The file or checkpoint folder `source` names, and its kind ("checkpoint" or "file")."""
    path = launcher.user_path(source)  # `bazel run` starts in its runfiles
    if path.is_file():
        return path, "file"
    if not path.is_dir():
        raise InitFromError(
            f"--init_from={source}: no such file or folder; give a checkpoint folder "
            "(runs/<project>/<run>/checkpoints/step_<N>), a run folder or a weights file"
        )
    if (path / checkpoint.META_FILE).is_file():
        return path, "checkpoint"
    if (path / REFERENCE_WEIGHTS_FILE).is_file():
        return path / REFERENCE_WEIGHTS_FILE, "file"
    if (path / "checkpoints").is_dir():
        newest = checkpoint.latest_complete(path / "checkpoints")
        if newest is None:
            raise InitFromError(
                f"--init_from={source}: the run folder has no complete checkpoint; name a "
                "checkpoint folder or a weights file instead"
            )
        return newest, "checkpoint"
    raise InitFromError(
        f"--init_from={source}: the folder is neither a checkpoint (no "
        f"{checkpoint.META_FILE}), a run folder (no checkpoints/) nor a release (no "
        f"{REFERENCE_WEIGHTS_FILE})"
    )


def is_reference_layout(state: Mapping[str, Any]) -> bool:
    """Whether `state` is a reference LatentMIM state dict rather than one of ours."""
    return any(key.startswith(REFERENCE_PREFIX) for key in state)


def _reference_converter(model_config: Any) -> Any:
    """The models/convert function that maps a reference checkpoint of `model_config`'s
    version into our naming, told apart by the encoder and decoder config classes (an
    EncoderV12Config is an EncoderV11Config, so the newest version is asked first):

        EncoderV12Config or PredictorV12Config  v1.2 (RoPE frequencies, qk-norms, registers)
        EncoderV11Config                        v1.1 (per-pixel layers)
        any other                               v1
    """
    from models.convert import reference_checkpoint, reference_v1_1, reference_v1_2
    from models.encoder.v1_1 import EncoderV11Config
    from models.encoder.v1_2 import EncoderV12Config
    from models.predictor.v1_2 import PredictorV12Config

    if isinstance(model_config.encoder, EncoderV12Config) or isinstance(
        model_config.decoder, PredictorV12Config
    ):
        return reference_v1_2.convert_reference_v1_2_state_dict
    if isinstance(model_config.encoder, EncoderV11Config):
        return reference_v1_1.convert_reference_v1_1_state_dict
    return reference_checkpoint.convert_reference_state_dict


def _from_reference(state: Mapping[str, Tensor], model_config: Any, source: str) -> dict:
    """A reference LatentMIM state dict in our naming, for the model `model_config` builds."""
    from models.convert import reference_checkpoint

    encoder = model_config.encoder
    convert = _reference_converter(model_config)
    try:
        return convert(
            state,
            component="latent_mim",
            patch_embed=encoder.patch_embed,
            target=model_config.target,
            max_patch_size=encoder.max_patch_size,
        )
    except reference_checkpoint.ReferenceCheckpointError as error:
        raise InitFromError(
            f"--init_from={source}: the reference checkpoint does not convert for "
            f"{type(model_config).__name__}: {' '.join(str(error).split())[:300]}"
        ) from error


def read_weights(source: str, model_config: Any) -> InitWeights:
    """The weights `source` names, in our naming (see the module docstring for the forms).

    Raises:
        InitFromError: nothing readable there (the message names the problem and the fix).
    """
    path, kind = _resolve(source)
    if kind == "checkpoint":
        return InitWeights(source, path, "checkpoint", _checkpoint_weights(path, source))
    state = _torch_file(path, source)
    if is_reference_layout(state):
        converted = _from_reference(state, model_config, source)
        return InitWeights(source, path, "reference", converted)
    return InitWeights(source, path, "state_dict", dict(state))


def expected_state(model_config: Any) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the state dict of the model `model_config` builds
    (built on the meta device: no memory, no initialisation)."""
    with torch.device("meta"):
        model = model_config.build()
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def fit_problems(state: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Every key where `state` does not fit `expected`, in the model's key order, then the
    keys the model does not have."""
    problems = []
    for key, shape in expected.items():
        if key not in state:
            problems.append(f"{key} is missing from the weights")
        elif tuple(state[key].shape) != shape:
            problems.append(
                f"{key} has shape {list(state[key].shape)} in the weights, {list(shape)} in "
                "the model"
            )
    problems += [
        f"{key} is in the weights but not in the model" for key in state if key not in expected
    ]
    return problems


def check_fits(weights: InitWeights, model_config: Any) -> None:
    """Raise InitFromError naming the first key where `weights` do not fit the model."""
    problems = fit_problems(weights.state, expected_state(model_config))
    if problems:
        more = f" (and {len(problems) - 1} more keys)" if len(problems) > 1 else ""
        raise InitFromError(
            f"--init_from={weights.source} does not fit this run's model "
            f"({type(model_config).__name__}): {problems[0]}{more}. Start from weights of "
            "the same model version, size, modalities and tokenization"
        )


def load_checked(source: str, model_config: Any) -> InitWeights:
    """`read_weights`, then `check_fits`: weights ready to load into the run's model."""
    weights = read_weights(source, model_config)
    check_fits(weights, model_config)
    return weights


def load_into(model: nn.Module, state: Mapping[str, Tensor], sharded: bool) -> None:
    """Copy `state` (full tensors) into `model`, which may be sharded by FSDP (every rank
    passes the full state and keeps its own shards)."""
    if sharded:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        # A copy: the setter replaces values of the dict it is given with this rank's shards.
        options = StateDictOptions(full_state_dict=True, strict=True)
        set_model_state_dict(model, dict(state), options=options)
    else:
        model.load_state_dict(state, strict=True)


class InitFromCallback(Callback):
    """Loads the init weights into the model when the run starts at step 0.

    pre_train runs after the trainer's resume: a run that resumed from its own checkpoint
    keeps that checkpoint's weights. Phase CLAIM: first among the pre_train hooks, so no
    other callback sees the random initialisation (e.g. an evaluation at the start).
    """

    phase = Phase.CLAIM

    def __init__(self, weights: InitWeights) -> None:
        self.weights: InitWeights | None = weights
        self.loaded = False

    def pre_train(self) -> None:
        weights, self.weights = self.weights, None  # the state is not kept after loading
        if weights is None:
            return
        if self.trainer.resumed_from is not None:
            logger.info(
                "resumed from %s: --init_from=%s is not applied",
                self.trainer.resumed_from,
                weights.source,
            )
            return
        module = self.trainer.train_module
        load_into(module.model, weights.state, bool(getattr(module, "sharded", False)))
        self.loaded = True
        if self.trainer.is_main:
            logger.info("initialised the model from %s", weights.describe())


def callbacks_for(config: Any) -> list[Callback]:
    """The callback that applies `config.init_from` (none when it is unset, or when the
    run already has a checkpoint to resume from, so a resume does not need the weights)."""
    source = getattr(config, "init_from", None)
    if not source:
        return []
    run_dir = Path(config.trainer.run.build().path)
    if checkpoint.latest_complete(run_dir / "checkpoints") is not None:
        return []
    return [InitFromCallback(load_checked(source, config.model))]

"""The experiment config tree, what builders receive, and how a variant's builders combine.

An experiment is eight builder functions (experiments/script.py holds the shared ones;
a variant file overrides the few its hypothesis changes):

    build_common_components(experiment, subcommand, run_name, cluster) -> CommonComponents
    build_model_config(common)         -> the model config      (models.latent_mim)
    build_dataset_config(common)       -> the dataset config    (models.data)
    build_dataloader_config(common)    -> the data loader config
    build_train_module_config(common)  -> the optimisation step (models.train)
    build_trainer_config(common)       -> the loop and callbacks
    build_visualize_config(common)     -> VisualizeSettings

`build_config` runs them into one `ExperimentConfig`, the tree that overrides address
(`--trainer.max_steps=20`), that `dry_run` prints and diffs, and that the trainer writes
to `config.yaml`: `serialization.load(".../config.yaml")` gives back an equal ExperimentConfig.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from launcher.settings import LaunchSettings
from models.config import serialization
from models.config.configurable import Configurable

if TYPE_CHECKING:
    from models.train.trainer import Trainer

SECTIONS = (
    "model",
    "dataset",
    "data_loader",
    "train_module",
    "trainer",
    "launch",
    "visualize",
)
"""The parts of an ExperimentConfig a variant may change (its CHANGES name some of these)."""

IDENTITY_FIELDS = ("experiment", "run_name", "cluster")
"""Fields that name a run rather than describe it; they differ between variants by design."""


@dataclasses.dataclass
class VisualizeSettings:
    """What `visualize` draws: masked inputs and the model's predictions, as PNGs.

    Settings, not a config: the subcommand reads them and nothing is built from them, so
    the name does not promise a `build()` (it was VisualizeConfig; old config.yaml files
    still load through serialization.CLASS_ALIASES).

    Attributes:
        num_samples: samples drawn (one PNG each).
        patch_size: patch size in pixels used to mask and embed.
        patches_per_side: crop size in patches (crop = patch_size * patches_per_side px).
        seed: picks the samples and the masks, so two checkpoints can be compared on the
            same inputs.
        checkpoint: a checkpoint folder; None: the newest one of the run (or the
            untrained model when the run has none).
        output_dir: where the PNGs go; None: <run folder>/visualizations/step_<N>.
    """

    num_samples: int = 4
    patch_size: int = 4
    patches_per_side: int = 8
    seed: int = 0
    checkpoint: str | None = None
    output_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("num_samples", "patch_size", "patches_per_side"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"VisualizeSettings.{name} must be >= 1, got {getattr(self, name)}"
                )


@dataclasses.dataclass
class CommonComponents:
    """What every builder receives: the run's identity and the cluster's facts.

    Attributes:
        experiment: the variant's name (its file and Bazel target, e.g. base_s2_only).
        subcommand: dry_run, train, launch, evaluate or visualize.
        run_name: the run's name (the run folder and the W&B run).
        cluster: the cluster name given on the command line.
        run_root: folder that holds `<project>/<run_name>/` run folders.
        data_dir: the training data (an H5 sample folder); None: the cluster has no
            dataset configured and the builders use the embedded synthetic one.
        wandb_project: the default W&B project (YYYY_MM_DD_description).
        training_modalities: modalities the model and the data use.
        launch: resources for `launch`.
    """

    experiment: str
    subcommand: str
    run_name: str
    cluster: str
    run_root: str
    data_dir: str | None
    wandb_project: str
    training_modalities: tuple[str, ...]
    launch: LaunchSettings = dataclasses.field(default_factory=LaunchSettings)

    @property
    def is_local(self) -> bool:
        return self.cluster == "local"


@dataclasses.dataclass(kw_only=True)
class ExperimentConfig(Configurable["Trainer"]):
    """Everything a run needs, as one tree that round-trips through YAML and JSON.

    Attributes:
        experiment: the variant that built this config.
        run_name: the run's name.
        cluster: where it runs.
        model: the model config (e.g. models.latent_mim.LatentMIMConfig or a subclass).
        dataset: the dataset config.
        data_loader: the data loader config (batches, crops, masking).
        train_module: optimiser, schedule, losses, batch split.
        trainer: loop length, run folder, checkpoints, logging callbacks.
        launch: cluster resources.
        visualize: what `visualize` draws.
        init_from: weights a new run starts from instead of its random initialisation
            (`train ... --init_from=PATH`, for fine-tuning or continued pretraining): one
            of our checkpoints (`checkpoints/step_<N>`, or a run folder: its newest), a
            state dict file of our model, or a reference OlmoEarth `weights.pth` (through
            models/convert). None: the seed's initialisation. experiments/framework/
            init_from.py reads and checks it; a resumed run ignores it (its checkpoint holds
            the weights).

    The model seed is `trainer.seed` (the `seed` property reads it; `--seed` is an alias).
    Files written before it had one place hold a top-level `seed:` too, the source the
    trainer's copy was synced from: `upgrade_retired_fields` moves it into the trainer.
    """

    experiment: str
    run_name: str
    cluster: str
    model: Any
    dataset: Any
    data_loader: Any
    train_module: Any
    trainer: Any
    launch: LaunchSettings
    visualize: VisualizeSettings
    init_from: str | None = None

    @property
    def seed(self) -> int:
        """The model initialisation seed: the trainer's, the one field that holds it."""
        return self.trainer.seed

    @classmethod
    def upgrade_retired_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Plain data of an older config.yaml in today's fields (models/config's engine
        calls this before building): a top-level `seed` becomes `trainer.seed`."""
        if "seed" not in data:
            return data
        data = dict(data)
        seed = data.pop("seed")
        if isinstance(data.get("trainer"), dict):
            data["trainer"] = {**data["trainer"], "seed": seed}
        return data

    def build(self, env: Any, device: Any, callbacks: Sequence[Any] = ()) -> Trainer:
        """The run's trainer (models.train.pretrain.build_trainer): this tree is a
        pretraining config with the experiment's sections around it."""
        from models.train.pretrain import build_trainer  # torch: only when a run starts

        return build_trainer(self, env, device, callbacks)

    @property
    def masking(self) -> Any:
        """The masking config (it travels with the data loader; models.train reads it here)."""
        return self.data_loader.masking

    def as_dict(self) -> dict[str, Any]:
        """Plain data with class names (what config.yaml holds)."""
        return serialization.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        config = serialization.from_dict(data, cls)
        if not isinstance(config, ExperimentConfig):
            raise serialization.ConfigFormatError(
                f"expected an ExperimentConfig, the data describes {type(config).__name__}"
            )
        return config


CommonBuilder = Callable[[str, str, str, str], CommonComponents]
SectionBuilder = Callable[[CommonComponents], Any]

BUILDER_NAMES = {
    "common_components_builder": "build_common_components",
    "model_config_builder": "build_model_config",
    "dataset_config_builder": "build_dataset_config",
    "dataloader_config_builder": "build_dataloader_config",
    "train_module_config_builder": "build_train_module_config",
    "trainer_config_builder": "build_trainer_config",
    "visualize_config_builder": "build_visualize_config",
}
"""main()'s keyword -> the function name an experiment module defines or imports."""

BASELINE_NAME = "baseline"
"""The name under which an experiment module imports the experiment it is compared to.

Every experiment but `base` declares its baseline this way, and there may be several
baselines: a v1 variant imports `from experiments import base as baseline`, a v1.2 ablation
`from experiments import v1_2_base as baseline`. The baseline is where the variant's unset
builders come from, what dry_run diffs it against and what the hygiene test holds it to, so
a v1.2 ablation is judged against v1.2 base, not v1 base. A baseline may itself derive from
another (v1_2_base from v1_1_base from base), each link declaring its own CHANGES.
"""


@dataclasses.dataclass(frozen=True)
class Builders:
    """The builder functions of one experiment."""

    common_components_builder: CommonBuilder
    model_config_builder: SectionBuilder
    dataset_config_builder: SectionBuilder
    dataloader_config_builder: SectionBuilder
    train_module_config_builder: SectionBuilder
    trainer_config_builder: SectionBuilder
    visualize_config_builder: SectionBuilder
    # The experiment this one is compared to (dry_run's diff, the hygiene test): the module
    # an experiment file imports as `baseline` (`from experiments import base as baseline`).
    baseline: Builders | None = None
    # The experiment's name where it is known (a module's last dotted part): how dry_run
    # names the baseline it diffs against.
    name: str | None = None

    @classmethod
    def from_module(cls, module: types.ModuleType) -> Builders:
        """The builders of an experiment module (`builder_functions`) and those of the
        module it imports as `baseline`, if any."""
        baseline = getattr(module, BASELINE_NAME, None)
        return cls(
            **builder_functions(vars(module)),
            baseline=cls.from_module(baseline) if isinstance(baseline, types.ModuleType) else None,
            name=module.__name__.rpartition(".")[2],
        )


def builder_functions(namespace: Mapping[str, Any]) -> dict[str, Callable[..., Any]]:
    """main()'s builder keywords from an experiment module's namespace.

    A builder the module defines or imports is used as it is; one it lacks is its
    baseline's (the module it imports as `baseline`, and so on up), so a variant file holds
    only the builders its hypothesis changes.
    """
    baseline = namespace.get(BASELINE_NAME)
    inherited = builder_functions(vars(baseline)) if isinstance(baseline, types.ModuleType) else {}
    found = {key: namespace.get(name, inherited.get(key)) for key, name in BUILDER_NAMES.items()}
    missing = [BUILDER_NAMES[key] for key, builder in found.items() if builder is None]
    if missing:
        raise AttributeError(
            f"experiment module {namespace.get('__name__', '?')} lacks {missing}: define "
            "them, import them from experiments.script, or import the experiment it derives "
            "from as its baseline (`from experiments import base as baseline`)"
        )
    return found


def build_config(builders: Builders, common: CommonComponents) -> ExperimentConfig:
    """Run every builder into one ExperimentConfig (nothing is instantiated)."""
    return ExperimentConfig(
        experiment=common.experiment,
        run_name=common.run_name,
        cluster=common.cluster,
        model=builders.model_config_builder(common),
        dataset=builders.dataset_config_builder(common),
        data_loader=builders.dataloader_config_builder(common),
        train_module=builders.train_module_config_builder(common),
        trainer=builders.trainer_config_builder(common),
        launch=common.launch,
        visualize=builders.visualize_config_builder(common),
    )


def as_subclass(config: Any, cls: type, **changes: Any) -> Any:
    """`config` rebuilt as its subclass `cls` with the same field values (plus `changes`).

    How a variant swaps in a component's config subclass without restating its fields:
        encoder = as_subclass(model.encoder, EncoderWithPerModalityProjectionConfig)
    """
    if not isinstance(cls, type) or not issubclass(cls, type(config)):
        raise TypeError(f"{cls!r} is not a subclass of {type(config).__name__}")
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    values.update(changes)
    return cls(**values)

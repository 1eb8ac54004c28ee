"""In-loop downstream evaluation as a models/train callback.

Every `interval` steps (and after the last step), rank 0 scores the online encoder of the
model being trained with an `Evaluator` and adds the scores (`eval/<task>/<metric>`) to the
step's metrics. The callback runs in the MEASURE phase, before the metrics writer and the
W&B logger (LOG), so the scores travel the trainer's own logging path into metrics.jsonl and
W&B with the step they belong to; an evaluation step must therefore be a logging step, which
`pre_train` checks (`interval` a multiple of the trainer's log_interval).

Task data is loaded (generated, for the synthetic tasks, on a machine's first use) before the
first step, so a run whose evaluation cannot work fails before it trains rather than at its
first evaluation; it is kept, so every evaluation only re-embeds. Other ranks do not
evaluate; they wait for rank 0 at the next collective of the step.

In an experiment's config it is `trainer.callbacks.evaluator` (experiments/script.py), so
`--trainer.callbacks.evaluator.interval=500` or `...evaluator.enabled=false` override it.
The layering stays one way: eval imports train's Callback, train never imports eval.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from models.config.configurable import Configurable
from models.eval.evaluator import Evaluator, EvaluatorConfig, encoder_of
from models.train.callbacks.callback import Callback, Metrics, Phase

logger = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class EvaluatorCallbackConfig(Configurable["EvaluatorCallback"]):
    """Attributes:
    evaluator: tasks and methods.
    interval: evaluate after every `interval` steps (>= 1).
    at_end: also evaluate after the last step.
    enabled: False: the trainer does not build it (TrainerConfig.callbacks).
    """

    evaluator: EvaluatorConfig = dataclasses.field(default_factory=EvaluatorConfig)
    interval: int = 4000
    at_end: bool = True
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"EvaluatorCallbackConfig.interval must be >= 1, got {self.interval}")

    def build(self) -> EvaluatorCallback:
        return EvaluatorCallback(self)


class EvaluatorCallback(Callback):
    """See the module docstring."""

    phase = Phase.MEASURE

    def __init__(self, config: EvaluatorCallbackConfig) -> None:
        self.config = config
        self.evaluator: Evaluator | None = None
        self.history: list[tuple[int, dict[str, float]]] = []

    def pre_train(self) -> None:
        log_interval = self.trainer.log_interval
        if self.config.interval % log_interval:
            raise ValueError(
                f"EvaluatorCallbackConfig.interval ({self.config.interval}) must be a multiple "
                f"of the trainer's log_interval ({log_interval}), or its scores would never "
                "be written"
            )
        if self.trainer.is_main:
            self.evaluator = self.evaluator or self.config.evaluator.build()
            for task in self.evaluator.tasks:
                logger.info("loading the data of evaluation task %s", task.name)
                self.evaluator.task_data(task)

    def _due(self, step: int) -> bool:
        last = step >= self.trainer.max_steps
        return step % self.config.interval == 0 or (self.config.at_end and last)

    def post_step(self, step: int, metrics: Metrics) -> None:
        if not self._due(step):
            return
        full_model = getattr(self.trainer.train_module, "full_model", None)
        if full_model is None:
            self._evaluate(step, metrics, getattr(self.trainer.train_module, "model", None))
            return
        # A sharded (FSDP) model is gathered on every rank, a collective, and rank 0 runs
        # the gathered copy: its blocks cannot run on rank 0 alone.
        with full_model() as model:
            self._evaluate(step, metrics, model)

    def _evaluate(self, step: int, metrics: Metrics, model: object) -> None:
        if not self.trainer.is_main:
            return
        if self.evaluator is None:
            self.evaluator = self.config.evaluator.build()
        if model is None:
            raise TypeError("the train module has no `model` attribute to evaluate")
        logger.info(
            "step %d: evaluating the encoder (%s) ...",
            step,
            ", ".join(task.name for task in self.evaluator.tasks),
        )
        started = time.perf_counter()
        scores = self.evaluator.evaluate(encoder_of(model))
        logger.info(
            "step %d evaluation (%.1f s): %s",
            step,
            time.perf_counter() - started,
            ", ".join(f"{key}={value:.4f}" for key, value in scores.items()),
        )
        self.history.append((step, scores))
        metrics.update(scores)

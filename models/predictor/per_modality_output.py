"""Worked example of a predictor variant: one output head per modality.

Hypothesis: modalities whose targets differ in kind (spectral time series vs. categorical maps)
are predicted better by separate output projections. Only the output head changes: the shared
Linear(D, output_width) becomes one Linear per supported modality, after the same shared final
LayerNorm; everything else is inherited from `Predictor`.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from models.nn import sequence
from models.predictor.predictor import Predictor, PredictorConfig


@dataclasses.dataclass(kw_only=True)
class PredictorWithPerModalityOutputConfig(PredictorConfig):
    """`PredictorConfig` whose `build()` gives a `PredictorWithPerModalityOutput`."""

    def build(self) -> PredictorWithPerModalityOutput:
        return PredictorWithPerModalityOutput(self)


class PredictorWithPerModalityOutput(Predictor):
    """`Predictor` with `output_heads`: Linear(D, output_width) per supported modality."""

    def build_output_projection(self) -> None:
        self.output_heads = nn.ModuleDict(
            {
                name: nn.Linear(self.config.width, self.config.output_width)
                for name in self.config.supported_modalities
            }
        )

    def project_output(self, tokens: Tensor, layout: sequence.TokenLayout) -> dict[str, Tensor]:
        per_modality = sequence.split(self.norm(tokens), layout)
        return {name: self.output_heads[name](value) for name, value in per_modality.items()}

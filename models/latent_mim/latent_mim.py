"""Latent MIM: encoder + predictor, and the frozen target the predictions are compared with.

Target kinds:
- "projection" (v1, "Latent MIM Lite"): a frozen copy of *only* the encoder's patch embeddings,
  taken at initialisation and never updated. The target of a token is the random projection of
  the unmasked patch. No copy of the blocks exists (the reference's v1 scripts keep a dead full
  copy; its projection_only_target option is this).
- "ema": a full frozen copy of the encoder, updated by `update_target` with an exponential
  moving average whose decay ramps linearly from ema_decay[0] to ema_decay[1] over training.
  `ema_target_output` picks its target: "patch_embed" (exit at depth 0, like the reference's
  token_exit_cfg = 0) or "encoder" (its full output on the unmasked view; decode-only
  modalities, which the encoder never encodes, fall back to their patch embeddings).

Losses live outside: `forward` returns latents, predictions and the pooled vector, and
`target_tokens` returns the targets; models/losses compares them.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor, nn

from models.config.configurable import Configurable
from models.encoder.encoder import Encoder, EncoderConfig
from models.latent_mim import sizes
from models.modalities import modalities
from models.modalities.modalities import DEFAULT_TOKENIZATION, TRAINING_MODALITIES, Tokenization
from models.modalities.samples import MaskedSample, TokensAndMasks
from models.nn.patch_embed import MultiModalPatchEmbed
from models.predictor.predictor import PredictorConfig

TARGET_KINDS = ("projection", "ema")
EMA_TARGET_OUTPUTS = ("patch_embed", "encoder")


@dataclasses.dataclass(kw_only=True)
class LatentMIMConfig(Configurable["LatentMIM"]):
    """Configuration of `LatentMIM`.

    Attributes:
        encoder: the online encoder (any EncoderConfig subclass).
        decoder: the predictor (any PredictorConfig subclass); same modalities and tokenization,
            reading and predicting tokens of the encoder's width.
        target: one of TARGET_KINDS.
        ema_decay: (start, end) EMA decay for target="ema", each in [0, 1].
        ema_target_output: one of EMA_TARGET_OUTPUTS (target="ema" only).
    """

    encoder: EncoderConfig
    decoder: PredictorConfig
    target: str = "projection"
    ema_decay: tuple[float, float] = (0.996, 1.0)
    ema_target_output: str = "patch_embed"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if self.target not in TARGET_KINDS:
            raise ValueError(f"{owner}.target must be one of {TARGET_KINDS}, got {self.target!r}")
        self.ema_decay = tuple(self.ema_decay)
        if len(self.ema_decay) != 2 or not all(0.0 <= d <= 1.0 for d in self.ema_decay):
            raise ValueError(
                f"{owner}.ema_decay must be (start, end) with both in [0, 1], got {self.ema_decay}"
            )
        if self.ema_target_output not in EMA_TARGET_OUTPUTS:
            raise ValueError(
                f"{owner}.ema_target_output must be one of {EMA_TARGET_OUTPUTS}, "
                f"got {self.ema_target_output!r}"
            )
        encoder_names = modalities.canonical_order(self.encoder.supported_modalities)
        decoder_names = modalities.canonical_order(self.decoder.supported_modalities)
        if encoder_names != decoder_names:
            raise ValueError(
                f"{owner}: encoder.supported_modalities {list(encoder_names)} and "
                f"decoder.supported_modalities {list(decoder_names)} must be the same"
            )
        if self.decoder.encoder_width != self.encoder.width:
            raise ValueError(
                f"{owner}: decoder.encoder_width={self.decoder.encoder_width} must equal "
                f"encoder.width={self.encoder.width}"
            )
        if self.decoder.output_width != self.encoder.width:
            raise ValueError(
                f"{owner}: decoder.output_width={self.decoder.output_width} must equal "
                f"encoder.width={self.encoder.width}, the width of the target tokens"
            )
        if self.decoder.tokenization != self.encoder.tokenization:
            raise ValueError(f"{owner}: encoder and decoder must use the same tokenization")

    @classmethod
    def from_size(
        cls,
        name: str | sizes.ModelSize,
        *,
        modalities: tuple[str, ...] = TRAINING_MODALITIES,
        tokenization: Tokenization = DEFAULT_TOKENIZATION,
        encoder_class: type[EncoderConfig] = EncoderConfig,
        decoder_class: type[PredictorConfig] = PredictorConfig,
        **kwargs,
    ) -> LatentMIMConfig:
        """The v1 recipe at size `name` (a key of sizes.MODEL_SIZES, or a ModelSize).

        `modalities` names the supported modalities (default: the nine v1 training ones).

        Nine training modalities (S2, S1, Landsat encoded; the six maps decode-only), Conv patch
        embeddings with max patch 8, drop_path 0.1 (encoder) / 0 (decoder), projection target.
        `encoder_class` / `decoder_class` swap in config subclasses; `kwargs` go to this config.
        """
        size = sizes.get_size(name) if isinstance(name, str) else name
        return cls(
            encoder=sizes.v1_encoder_config(size, modalities, tokenization, encoder_class),
            decoder=sizes.v1_predictor_config(size, modalities, tokenization, decoder_class),
            **kwargs,
        )

    def build(self) -> LatentMIM:
        return LatentMIM(self)


@dataclasses.dataclass
class LatentMIMOutput:
    """latent: encoder output (zeros at removed positions); decoded: predictions (read the
    DECODER positions); pooled: [B, D] instance vector for the contrastive loss."""

    latent: TokensAndMasks
    decoded: TokensAndMasks
    pooled: Tensor


class FrozenPatchTarget(nn.Module):
    """A frozen copy of the encoder's patch embeddings: the random-projection target."""

    def __init__(self, patch_embed: MultiModalPatchEmbed):
        super().__init__()
        self.patch_embed = copy.deepcopy(patch_embed)
        self.requires_grad_(False)

    def embed_patches_only(self, x: MaskedSample, patch_size: int) -> TokensAndMasks:
        return self.patch_embed(x, patch_size)


def _frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target.eval()


class LatentMIM(nn.Module):
    """See the module docstring; built from a `LatentMIMConfig`."""

    def __init__(self, config: LatentMIMConfig):
        super().__init__()
        self.config = config
        self.encoder: Encoder = config.encoder.build()
        self.decoder = config.decoder.build()
        if config.target == "projection":
            self.target: nn.Module = FrozenPatchTarget(self.encoder.patch_embed)
        else:
            self.target = _frozen_copy(self.encoder)
        self.target.eval()

    def train(self, mode: bool = True) -> LatentMIM:
        """Train/eval for encoder and decoder; the target always stays in eval mode."""
        super().train(mode)
        self.target.eval()
        return self

    def forward(
        self, x: MaskedSample, patch_size: int, input_res_m: float = 10.0
    ) -> LatentMIMOutput:
        """Encodes the ONLINE_ENCODER tokens of `x` and predicts its DECODER tokens."""
        encoded = self.encoder(x, patch_size, input_res_m)
        decoded = self.decoder(encoded.tokens_and_masks, x.timestamps, patch_size, input_res_m)
        return LatentMIMOutput(
            latent=encoded.tokens_and_masks, decoded=decoded, pooled=encoded.pooled
        )

    @torch.no_grad()
    def target_tokens(self, x: MaskedSample, patch_size: int) -> TokensAndMasks:
        """The frozen target's tokens of `x.unmask()`, returned with the token masks of `x`.

        Every supported modality present in `x` is included (the maps are targets too), so the
        losses can select the DECODER tokens of this view.
        """
        unmasked = x.unmask()
        if self.config.target == "ema" and self.config.ema_target_output == "encoder":
            tokens = dict(self.target(unmasked, patch_size).tokens_and_masks.tokens)
            skipped = self.encoder.config.decode_only_modalities
            decode_only = [name for name in x.modality_names if name in skipped]
            if decode_only:
                tokens.update(self.target.patch_embed(unmasked, patch_size, decode_only).tokens)
        else:
            tokens = dict(self.target.embed_patches_only(unmasked, patch_size).tokens)
        names = modalities.canonical_order(tokens)
        masks = self.encoder.patch_embed.token_masks(x, patch_size, names)
        return TokensAndMasks(tokens={name: tokens[name] for name in names}, masks=masks)

    @torch.no_grad()
    def update_target(self, step: int, max_steps: int) -> None:
        """EMA step of the target towards the online encoder (no-op for the projection target).

        decay = start + step * (end - start) / max_steps; target = decay target + (1 - decay)
        online. With ema_decay = (1, 1) the target never moves, as the reference's v1 scripts.
        """
        if self.config.target != "ema":
            return
        start, end = self.config.ema_decay
        if start == 1.0 and end == 1.0:
            return
        decay = start + step * (end - start) / max(max_steps, 1)
        target = list(self.target.parameters())
        online = list(self.encoder.parameters())
        torch._foreach_mul_(target, decay)
        torch._foreach_add_(target, online, alpha=1.0 - decay)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters (trainable or frozen, no buffers) of encoder, decoder and target."""
        return {
            "encoder": sum(p.numel() for p in self.encoder.parameters()),
            "decoder": sum(p.numel() for p in self.decoder.parameters()),
            "target": sum(p.numel() for p in self.target.parameters()),
        }

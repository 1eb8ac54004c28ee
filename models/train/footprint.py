"""Per-device memory and step time of a training run, estimated before it starts.

`estimate(model, tokens, setup)` answers "does base at microbatch 32 fit on an 80 GB GPU
with DDP, or does it need FSDP?" and "how long is a step on 8 H100s?" from the configs
alone; experiments' `dry_run` prints it. `footprint_test` checks it against the memory a
real CPU step measures (models/train/footprint_measure.py) for nano and base.

Memory per device, in the categories `MemoryEstimate` reports:
- parameters: every parameter in fp32 (the master copy, also under bf16 autocast),
  trainable or frozen (the frozen target's patch embeddings too); fsdp/hsdp hold
  1/shard_size of it.
- gradients: one fp32 gradient per trainable parameter; sharded likewise.
- optimizer: AdamW's two fp32 moments per trainable parameter (the fused kernel the recipe
  uses needs no scratch); sharded likewise.
- copies: what the parallelism and the precision add on top. DDP on more than one rank
  keeps its reducer's buckets, a second full set of gradients (the train module does not
  pass gradient_as_bucket_view); bf16 autocast under DDP caches a bf16 copy of every
  trainable weight for the whole forward and backward. FSDP all-gathers one block at a time
  (the next one is prefetched: two blocks) plus the root's own parameters (embeddings,
  norms, heads), in the compute dtype.
- activations: the tensors the forward of both views saves for backward, counted from the
  code (models/nn/attention.py, the encoder, the predictor, the losses) per token, plus the
  frozen target's tokens and the model's outputs, alive until the loss is computed. See
  `activation_bytes`.

Peak = the larger of the forward peak (parameters + copies + activations + the gradients a
previous microbatch left when a step has several) and the optimizer peak (parameters +
gradients + optimizer + copies), the backward freeing activations about as fast as it
creates gradients. The total adds `ALLOCATOR_MARGIN` and `RESERVED_BYTES` (below).

Step time = FLOPs / (peak FLOP/s of the chosen accelerator x MFU), with the FLOPs counted
per part of the model over the tokens each part processes (`flops_per_sample`): 6 x
parameters x tokens for the transformer layers (2 forward, 4 backward), attention's own
12 x queries x keys x width per layer, the patch embedding's 4 x (no input gradient) and
the target's 2 x (forward only), two views.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from models.data import crop
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue
from models.train.accelerators import Accelerator

PARALLELISMS = ("ddp", "fsdp", "hsdp")

ALLOCATOR_MARGIN = 0.10
"""Fraction added to the peak of live tensors for the CUDA caching allocator's rounding and
fragmentation: blocks are rounded up to 512 B (2 MiB segments for large ones), and a
training loop whose token count changes every step leaves freed blocks that do not fit the
next request; 5-15% over the live peak is the usual range, so 10%."""

RESERVED_BYTES = 1 * 2**30
"""Bytes per GPU outside PyTorch's tensors: the CUDA context and kernels (~0.5 GiB on an H100
with torch's libraries loaded) and NCCL's communication buffers (a few hundred MiB)."""

DEFAULT_MFU = 0.40
"""Model FLOPs utilisation assumed for the step time: 40% of dense bf16 peak is what ViT
pretraining at these widths typically reaches on H100s (larger widths do better)."""

FSDP_PREFETCHED_BLOCKS = 2
"""Blocks whose full parameters FSDP holds at once: the running one and the prefetched next."""

_FP32 = 4
_LAYER_NORM_STATS = 2 * _FP32
"""LayerNorm saves its mean and reciprocal std per row (fp32) besides its input."""


@dataclasses.dataclass(frozen=True)
class ModalityTokens:
    """What one modality puts through the model, per sample and view.

    Attributes:
        name: the modality.
        positions: token positions (h x w x T x band sets; band sets for a non-spatial
            one), MISSING included: every dense per-modality tensor has this many rows.
        encoder: ONLINE_ENCODER tokens (the encoder's sequence).
        decoder: DECODER tokens (the predictor's queries, the loss's tokens).
        input_values: input values per position the patch embedding reads (max patch size
            squared x bands of its band set, as the images are resized to the max patch size
            first; bands for a non-spatial modality).
        encodable: the encoder embeds it (decode-only maps are only the target's).
    """

    name: str
    positions: float
    encoder: float
    decoder: float
    input_values: float
    encodable: bool


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a LatentMIM model."""

    encoder_width: int
    encoder_depth: int
    encoder_heads: int
    encoder_hidden: int
    decoder_width: int
    decoder_depth: int
    decoder_heads: int
    decoder_hidden: int
    parameters: int
    trainable: int
    encoder_block_parameters: int
    decoder_block_parameters: int
    max_patch_size: int
    encodable_modalities: tuple[str, ...]

    @classmethod
    def of(cls, model_config: Any) -> ModelShape:
        """The shape of `model_config` (a LatentMIMConfig or subclass), built on the meta
        device for its parameter counts (no memory, no weights)."""
        with torch.device("meta"):
            model = model_config.build()
        return cls.of_model(model)

    @classmethod
    def of_model(cls, model: nn.Module) -> ModelShape:
        encoder, decoder = model.encoder, model.decoder

        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        return cls(
            encoder_width=encoder.config.width,
            encoder_depth=encoder.config.depth,
            encoder_heads=encoder.config.num_heads,
            encoder_hidden=int(encoder.config.width * encoder.config.mlp_ratio),
            decoder_width=decoder.config.width,
            decoder_depth=decoder.config.depth,
            decoder_heads=decoder.config.num_heads,
            decoder_hidden=int(decoder.config.width * decoder.config.mlp_ratio),
            parameters=count(model),
            trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
            encoder_block_parameters=count(encoder.blocks[0]) if len(encoder.blocks) else 0,
            decoder_block_parameters=count(decoder.blocks[0]) if len(decoder.blocks) else 0,
            max_patch_size=encoder.config.max_patch_size,
            encodable_modalities=tuple(encoder.config.encodable_modalities),
        )

    @property
    def block_parameters(self) -> int:
        return (
            self.encoder_depth * self.encoder_block_parameters
            + self.decoder_depth * self.decoder_block_parameters
        )


@dataclasses.dataclass(frozen=True)
class Setup:
    """How the step runs on each device.

    Attributes:
        microbatch_size: samples per forward/backward on one device.
        rank_batch_size: samples per optimizer step on one device; more than the microbatch
            means gradient accumulation (gradients live during the next forward).
        parallelism: one of PARALLELISMS.
        world_size: data-parallel processes.
        shard_size: ranks one parameter is sharded over (hsdp's shard group; fsdp: the world
            size; ddp: 1).
        bf16: bf16 autocast (the recipe on GPU); else fp32 throughout.
        attention_output_copies: attention outputs each layer keeps for backward: 1 with
            FlashAttention varlen (GPU) or one batched SDPA call (every sample the same
            length); 2 with CPU's per-sample SDPA calls (samples of different lengths),
            whose outputs are kept and so is their concatenation (models/nn/varlen.py).
    """

    microbatch_size: int
    rank_batch_size: int
    parallelism: str = "ddp"
    world_size: int = 1
    shard_size: int = 1
    bf16: bool = True
    attention_output_copies: int = 1

    def __post_init__(self) -> None:
        if self.parallelism not in PARALLELISMS:
            raise ValueError(f"parallelism must be one of {PARALLELISMS}, got {self.parallelism!r}")
        if self.microbatch_size < 1 or self.rank_batch_size < self.microbatch_size:
            raise ValueError(
                f"need 1 <= microbatch_size ({self.microbatch_size}) <= rank_batch_size "
                f"({self.rank_batch_size})"
            )
        if self.attention_output_copies not in (1, 2):
            raise ValueError(
                f"attention_output_copies must be 1 or 2, got {self.attention_output_copies}"
            )
        if self.shard_size < 1 or self.world_size % self.shard_size:
            raise ValueError(
                f"shard_size ({self.shard_size}) must divide world_size ({self.world_size})"
            )

    @property
    def sharded(self) -> bool:
        return self.parallelism in ("fsdp", "hsdp")

    @property
    def compute_bytes(self) -> int:
        return 2 if self.bf16 else _FP32

    def with_parallelism(self, parallelism: str, shard_size: int | None = None) -> Setup:
        """The same run under another parallelism (fsdp shards over the world size, hsdp
        over `shard_size`, ddp over nothing)."""
        size = {"ddp": 1, "fsdp": self.world_size}.get(parallelism, shard_size or self.world_size)
        return dataclasses.replace(self, parallelism=parallelism, shard_size=size)


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device (see the module docstring for each category)."""

    parameters: float
    gradients: float
    optimizer: float
    copies: float
    activations: float
    forward_peak: float
    optimizer_peak: float

    @property
    def peak(self) -> float:
        """Most bytes of live tensors at once."""
        return max(self.forward_peak, self.optimizer_peak)

    @property
    def total(self) -> float:
        """What the device must have: the peak, the allocator's margin and the reserve."""
        return self.peak * (1 + ALLOCATOR_MARGIN) + RESERVED_BYTES

    def fits(self, memory_bytes: float) -> bool:
        return self.total <= memory_bytes


# -- tokens ------------------------------------------------------------------------------


def _input_values(spec: modalities.ModalitySpec, max_patch_size: int) -> float:
    """Mean input values per position of a modality (over its band sets)."""
    sets = spec.band_set_indices()
    bands = sum(len(bands) for bands in sets) / len(sets)
    return bands * (max_patch_size**2 if spec.is_spatial else 1)


def tokens_of_view(model_config: Any, view: MaskedSample, patch_size: int) -> list[ModalityTokens]:
    """The per-sample mean of what `view` puts through a model of `model_config` (counted
    from the view's masks: what a step on it really processes)."""
    encoder = model_config.encoder
    encodable = set(encoder.encodable_modalities)
    specs = {spec.name: spec for spec in encoder.specs}
    batch = view.batch_size
    out = []
    for name in modalities.canonical_order([n for n in view.modality_names if n in specs]):
        spec = specs[name]
        mask = view.masks[name]
        if spec.is_spatial:
            mask = mask[:, ::patch_size, ::patch_size]
        encoded = float((mask == MaskValue.ONLINE_ENCODER).sum()) / batch
        out.append(
            ModalityTokens(
                name=name,
                positions=mask[0].numel(),
                encoder=encoded if name in encodable else 0.0,
                decoder=float((mask == MaskValue.DECODER).sum()) / batch,
                input_values=_input_values(spec, encoder.max_patch_size),
                encodable=name in encodable,
            )
        )
    return out


def largest_step_tokens(
    model_config: Any,
    patches_per_side: Iterable[int],
    token_budget: int | None,
    max_timesteps: int,
    encode_ratio: float,
    decode_ratio: float,
    modality_names: Sequence[str] | None = None,
) -> list[ModalityTokens]:
    """What one sample puts through the model in the largest step the loader can draw.

    The loader crops each instance to h x h patches and as many timesteps as fit the token
    budget (models/data/crop.py); memory peaks at the h with the most tokens. Of those,
    the masking gives `encode_ratio` of every encodable modality's tokens to the encoder
    and `decode_ratio` of every modality's to the decoder (modality_cross_random's first
    stage; its band-set choice only moves tokens to TARGET_ONLY, so this is the most the
    step can process). Every modality is assumed present (no MISSING data).
    """
    encoder = model_config.encoder
    names = encoder.supported_modalities if modality_names is None else modality_names
    specs = [spec for spec in encoder.specs if spec.name in set(names)]
    encodable = set(encoder.encodable_modalities)
    best: tuple[int, int, int] | None = None  # (tokens, h, T)
    for side in patches_per_side:
        try:
            steps = crop.max_timesteps_within_budget(specs, side, token_budget, max_timesteps)
        except ValueError:  # not even one timestep of this window fits the budget
            continue
        static, per_step = crop.token_counts(specs, side)
        total = static + steps * per_step
        if best is None or total > best[0]:
            best = (total, side, steps)
    if best is None:
        raise ValueError(
            f"no patches_per_side in {tuple(patches_per_side)} fits token_budget {token_budget}"
        )
    _, side, steps = best
    out = []
    for spec in specs:
        if spec.is_spatial:
            positions = side * side * spec.num_band_sets * (steps if spec.is_multitemporal else 1)
        else:
            positions = spec.num_band_sets
        is_encodable = spec.name in encodable
        out.append(
            ModalityTokens(
                name=spec.name,
                positions=float(positions),
                encoder=float(math.floor(positions * encode_ratio)) if is_encodable else 0.0,
                decoder=float(math.floor(positions * decode_ratio)),
                input_values=_input_values(spec, encoder.max_patch_size),
                encodable=is_encodable,
            )
        )
    return out


# -- memory ------------------------------------------------------------------------------


def activation_bytes(shape: ModelShape, tokens: Sequence[ModalityTokens], setup: Setup) -> float:
    """Bytes the forward of both views of one microbatch keeps until the loss is computed.

    Per token, what each op saves for its backward (r: the fp32 residual stream, which
    LayerNorm saves; c: the compute dtype, what a Linear saves of its input under autocast;
    a: `Setup.attention_output_copies`):

    - encoder block, per ONLINE_ENCODER token: LN1 and LN2 inputs r 2D; qkv input c D and
      output c 3D (SDPA keeps q, k, v as views of it); attention output c aD; fc1 input c D;
      fc1 output (GELU's input) c H; GELU output (fc2's input) c H; LayerNorm statistics;
      the logsumexp per head (fp32).
    - predictor block, per DECODER token: the same without k and v (c 3D less c 2D); per
      context (ONLINE_ENCODER) token, the kv output c 2D; the context itself once (fp32) or,
      cast to bf16, once per block.
    - outside the blocks: the patch embedding's input (c per input value of every encodable
      position), the encoder's final LN (r D per encoder token), the predictor's input LN
      and projection (r + c per encoder token of the encoder width), its output LN and
      Linear over every position (r + c per position of the decoder width), the outputs
      kept until the loss (the latent tokens, fp32, and the predictions, c, of every
      position), the frozen target's tokens (c, every position), and per modality the loss's
      normalized predictions and targets (fp32) and its [n, n] log-softmax (fp32).
    """
    r, c = _FP32, setup.compute_bytes
    a = setup.attention_output_copies
    d_enc, h_enc, heads_enc = shape.encoder_width, shape.encoder_hidden, shape.encoder_heads
    d_dec, h_dec, heads_dec = shape.decoder_width, shape.decoder_hidden, shape.decoder_heads
    encoder_tokens = sum(t.encoder for t in tokens)
    decoder_tokens = sum(t.decoder for t in tokens)
    positions = sum(t.positions for t in tokens)
    embedded_values = sum(t.positions * t.input_values for t in tokens if t.encodable)

    encoder_block = (
        r * 2 * d_enc
        + c * ((5 + a) * d_enc + 2 * h_enc)
        + 2 * _LAYER_NORM_STATS
        + _FP32 * heads_enc
    )
    decoder_query = (
        r * 2 * d_dec
        + c * ((3 + a) * d_dec + 2 * h_dec)
        + 2 * _LAYER_NORM_STATS
        + _FP32 * heads_dec
    )
    context_per_block = c * 2 * d_dec
    context_inputs = (shape.decoder_depth if setup.bf16 else 1) * (c if setup.bf16 else r) * d_dec

    per_sample = (
        c * embedded_values
        + shape.encoder_depth * encoder_tokens * encoder_block
        + encoder_tokens * (r * d_enc + _LAYER_NORM_STATS)  # final LN
        + encoder_tokens * ((r + c) * d_enc + _LAYER_NORM_STATS)  # predictor input
        + encoder_tokens * context_inputs
        + shape.decoder_depth
        * (decoder_tokens * decoder_query + encoder_tokens * context_per_block)
        + positions * ((r + c) * d_dec + _LAYER_NORM_STATS)  # output LN and Linear
        + positions * (r + c + c) * d_enc  # latent and predictions kept, target tokens
        + sum(_FP32 * (2 * t.decoder * d_enc + t.decoder**2) for t in tokens)  # the loss
    )
    return 2 * setup.microbatch_size * per_sample


def estimate_memory(
    shape: ModelShape, tokens: Sequence[ModalityTokens], setup: Setup
) -> MemoryEstimate:
    """Per-device memory of one training step (see the module docstring)."""
    # One process runs the bare model whatever the parallelism (the train module's rule).
    sharded = setup.sharded and setup.world_size > 1
    shard = setup.shard_size if sharded else 1
    parameters = _FP32 * shape.parameters / shard
    gradients = _FP32 * shape.trainable / shard
    optimizer = 2 * _FP32 * shape.trainable / shard
    if sharded:
        root = shape.parameters - shape.block_parameters
        largest_block = max(shape.encoder_block_parameters, shape.decoder_block_parameters)
        copies = setup.compute_bytes * (root + FSDP_PREFETCHED_BLOCKS * largest_block)
    else:
        buckets = _FP32 * shape.trainable if setup.world_size > 1 else 0.0
        autocast_cache = 2 * shape.trainable if setup.bf16 else 0.0
        copies = buckets + autocast_cache
    activations = activation_bytes(shape, tokens, setup)
    accumulating = setup.rank_batch_size > setup.microbatch_size
    forward_peak = parameters + copies + activations + (gradients if accumulating else 0.0)
    optimizer_peak = parameters + gradients + optimizer + copies
    return MemoryEstimate(
        parameters=parameters,
        gradients=gradients,
        optimizer=optimizer,
        copies=copies,
        activations=activations,
        forward_peak=forward_peak,
        optimizer_peak=optimizer_peak,
    )


# -- time ----------------------------------------------------------------------------------


def flops_per_sample(shape: ModelShape, tokens: Sequence[ModalityTokens]) -> float:
    """Training FLOPs of one sample, both views (see the module docstring)."""
    d_enc, d_dec = shape.encoder_width, shape.decoder_width
    encoder_tokens = sum(t.encoder for t in tokens)
    decoder_tokens = sum(t.decoder for t in tokens)
    positions = sum(t.positions for t in tokens)
    kv_parameters = 2 * d_dec * d_dec + 2 * d_dec
    per_view = (
        4 * d_enc * sum(t.positions * t.input_values for t in tokens if t.encodable)
        + 2 * d_enc * sum(t.positions * t.input_values for t in tokens)  # frozen target
        + shape.encoder_depth
        * (
            6 * shape.encoder_block_parameters * encoder_tokens
            + 12 * encoder_tokens * encoder_tokens * d_enc
        )
        + 6 * d_enc * d_dec * encoder_tokens  # predictor input projection
        + shape.decoder_depth
        * (
            6 * (shape.decoder_block_parameters - kv_parameters) * decoder_tokens
            + 6 * kv_parameters * encoder_tokens
            + 12 * decoder_tokens * encoder_tokens * d_dec
        )
        + 6 * d_dec * d_enc * positions  # output projection
        + sum(6 * t.decoder * t.decoder * d_enc for t in tokens)  # patch discrimination
    )
    return 2 * per_view


def step_seconds(
    shape: ModelShape,
    tokens: Sequence[ModalityTokens],
    global_batch_size: int,
    world_size: int,
    accelerator: Accelerator,
    bf16: bool = True,
    mfu: float = DEFAULT_MFU,
) -> float:
    """Seconds of one optimizer step: the global batch's FLOPs split over `world_size`
    devices of `accelerator` running at `mfu` of its dense peak."""
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    peak = accelerator.peak_flops(torch.bfloat16 if bf16 else torch.float32)
    flops = flops_per_sample(shape, tokens) * global_batch_size / world_size
    return flops / (peak * mfu)


# -- the run's verdict ---------------------------------------------------------------------


def verdict(
    estimates: Mapping[str, MemoryEstimate],
    memory_bytes: float,
    microbatch_size: int,
    smaller_microbatch: Mapping[int, Mapping[str, MemoryEstimate]] | None = None,
) -> str:
    """One line: which parallelism fits `memory_bytes`, or which microbatch would.

    `estimates` holds the run's setup under each parallelism; `smaller_microbatch` the same
    at smaller microbatch sizes (largest first), tried when nothing fits.
    """
    if "ddp" in estimates and estimates["ddp"].fits(memory_bytes):
        return "fits with DDP"
    sharded = [name for name in ("fsdp", "hsdp") if name in estimates]
    fitting = [name for name in sharded if estimates[name].fits(memory_bytes)]
    if fitting:
        return f"needs FSDP: fits with {' and '.join(n.upper() for n in fitting)}, not with DDP"
    for size, by_parallelism in (smaller_microbatch or {}).items():
        for name in ("ddp", *sharded):
            if name in by_parallelism and by_parallelism[name].fits(memory_bytes):
                return (
                    f"does not fit at microbatch {microbatch_size}: try "
                    f"--train_module.microbatch_size={size} ({name.upper()})"
                )
    return f"does not fit at microbatch {microbatch_size}, nor at microbatch 1"

"""Embedding extraction (frozen encoder, eval mode, nothing masked), ours against the reference.

    bazel run //tools/bench:embed -- [--size base] [--patch 4] [--batch-size 2] \
        [--patches-per-side 4] [--device cpu|cuda] [--repeats 3]

Both encoders are built at the same size (the v1 recipe) and embed the same fully visible
batches of the three encoded modalities (S2, S1, Landsat: what an evaluation feeds), B
instances of h x h patches and the most timesteps within the 2250-token budget. An embedding
is the mean of a sample's encoder tokens (the MEAN pooling of the reference's eval wrapper);
each run is under torch.inference_mode.
- ours: `Encoder.forward(view, patch_size)` as models/eval calls it, in fp32 and in bf16 via
  `models.nn.precision.inference_precision` (autocast with the GEMM weights cast once; on CPU
  too: the bf16 matmul is about twice the fp32 one with AVX512-BF16);
- reference: its `Encoder.forward(..., fast_pass=True)` (its eval wrapper's choice when
  nothing is missing), in fp32 and in bf16 autocast.
Printed: seconds per batch (median after warm-up, the four runs interleaved), samples/s and
tokens/s, the ratios ours / reference, and how close our bf16 embeddings are to our fp32
ones: the cosine similarity of every sample's embedding (the smallest), and of every token
(the smallest and the mean). The --device cuda path exists but was not measured here.
"""

from __future__ import annotations

import contextlib
import copy
import os
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from absl import flags

from launcher.cli import command
from models.latent_mim import sizes
from models.latent_mim.latent_mim import LatentMIMConfig
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue, Sample
from models.nn.precision import gemm_weights_as, inference_precision
from tools.bench import batches, measure
from tools.bench.reference import load_reference

INPUT_MODALITIES = ("sentinel2_l2a", "sentinel1", "landsat")
PRECISION = {torch.float32: "fp32", torch.bfloat16: "bf16"}


def embedding_batch(shape: batches.BatchShape, seed: int = 0) -> MaskedSample:
    """The encoded modalities of a synthetic batch, every token visible, no gaps."""
    sample = batches.synthetic_sample(shape, seed, names=INPUT_MODALITIES)
    data = {name: value.clamp_min(0.0) for name, value in sample.data.items()}
    # Gaps are MISSING_VALUE (negative); clamping removes them so every token is visible.
    return MaskedSample.from_sample(Sample(data=data, timestamps=sample.timestamps))


def mean_pool(tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, D] fp32: each sample's mean over its ONLINE_ENCODER tokens, all modalities."""
    total, count = 0.0, 0.0
    for name, value in tokens.items():
        batch, width = value.shape[0], value.shape[-1]
        visible = (masks[name] == MaskValue.ONLINE_ENCODER).reshape(batch, -1, 1).float()
        total = total + (value.reshape(batch, -1, width).float() * visible).sum(dim=1)
        count = count + visible.sum(dim=1)
    return total / count.clamp_min(1.0)


def token_matrix(tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """[tokens, D] fp32: every ONLINE_ENCODER token of the batch."""
    rows = []
    for name in modalities.canonical_order(tokens):
        value = tokens[name]
        visible = masks[name] == MaskValue.ONLINE_ENCODER
        rows.append(value[visible].float())
    return torch.cat(rows)


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class OurEmbedder:
    """Our encoder as models/eval embeds with it (`inference_precision`).

    An extraction casts the GEMM weights to bf16 once and keeps them for all its batches
    (`embed_items`), so a timed bf16 batch here is one batch of a long extraction: it runs a
    copy of the encoder whose GEMM weights are already bf16 (the same values, the same
    autocast numerics).
    """

    name = "ours"

    def __init__(self, size: sizes.ModelSize, device: torch.device) -> None:
        self.encoder = LatentMIMConfig.from_size(size).build().encoder.to(device).eval()
        self.bf16_encoder = copy.deepcopy(self.encoder)
        self._bf16_weights = contextlib.ExitStack()
        self._bf16_weights.enter_context(gemm_weights_as(self.bf16_encoder, torch.bfloat16))

    def tokens(self, view: MaskedSample, patch_size: int, dtype: torch.dtype):
        precision = PRECISION[dtype]
        encoder = self.bf16_encoder if precision == "bf16" else self.encoder
        with (
            torch.inference_mode(),
            inference_precision(encoder, precision, view.timestamps.device),
        ):
            encoded = encoder(view, patch_size).tokens_and_masks
        names = [name for name in encoded.tokens if name in view.data]
        token_masks = {name: encoded.masks[name] for name in names}
        return {name: encoded.tokens[name] for name in names}, token_masks


class ReferenceEmbedder:
    name = "reference"

    def __init__(self, reference_batch, size: sizes.ModelSize, device: torch.device) -> None:
        self.reference_batch = reference_batch
        model = reference_batch.build_reference(
            size, drop_path=0.1, projection_only_target=True, modality_names=INPUT_MODALITIES
        )
        self.encoder = model.encoder.to(device).eval()

    def tokens(self, view: MaskedSample, patch_size: int, dtype: torch.dtype):
        sample = self.reference_batch.to_reference_sample(view)
        with torch.inference_mode(), autocast(view.timestamps.device, dtype):
            encoded = self.encoder(sample, patch_size=patch_size, fast_pass=True)
        encoded = encoded["tokens_and_masks"]
        tokens = self.reference_batch.reference_tokens(encoded)
        masks = {name: getattr(encoded, f"{name}_mask") for name in tokens}
        return tokens, masks


def cosine_report(ours: tuple, reference: tuple) -> tuple[float, float, float]:
    """(smallest per-sample, smallest per-token, mean per-token) cosine similarity."""
    per_sample = F.cosine_similarity(mean_pool(*ours), mean_pool(*reference), dim=-1)
    per_token = F.cosine_similarity(token_matrix(*ours), token_matrix(*reference), dim=-1)
    return per_sample.min().item(), per_token.min().item(), per_token.mean().item()


FLAGS = flags.FlagValues()
flags.DEFINE_enum("size", "base", list(sizes.MODEL_SIZES), "model size", flag_values=FLAGS)
flags.DEFINE_integer("patch", 4, "patch size", flag_values=FLAGS, lower_bound=1)
flags.DEFINE_enum("device", "cpu", ["cpu", "cuda"], "where to run", flag_values=FLAGS)
flags.DEFINE_integer("batch-size", 2, "instances per batch", flag_values=FLAGS, lower_bound=1)
flags.DEFINE_integer(
    "patches-per-side", 4, "h = w of the crop, in patches", flag_values=FLAGS, lower_bound=1
)
flags.DEFINE_integer("token-budget", 2250, "tokens per instance", flag_values=FLAGS, lower_bound=1)
flags.DEFINE_integer("warmup", 1, "untimed batches first", flag_values=FLAGS, lower_bound=0)
flags.DEFINE_integer("repeats", 3, "timed batches per run", flag_values=FLAGS, lower_bound=1)
flags.DEFINE_integer(
    "threads", None, "torch threads (default: all cores)", flag_values=FLAGS, lower_bound=1
)
flags.DEFINE_boolean("no-reference", False, "time ours only", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "seed of the batch", flag_values=FLAGS)


def run(args: types.SimpleNamespace) -> None:
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = torch.device(args.device)
    size = sizes.get_size(args.size)
    reference_batch, why = (None, "--no-reference") if args.no_reference else load_reference()
    shape = batches.budget_shape(
        args.batch_size, args.patch, args.patches_per_side, args.token_budget
    )
    view = embedding_batch(shape, args.seed).to(device)
    tokens_per_batch = sum(
        mask[:, :: args.patch, :: args.patch].numel() for mask in view.masks.values()
    )
    print(
        f"embed: size {args.size}, device {device}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, batch {args.batch_size}, P={args.patch}, "
        f"h = w = {args.patches_per_side}, T={shape.timesteps}, "
        f"{tokens_per_batch // args.batch_size} encoder tokens/instance, "
        f"warmup {args.warmup}, repeats {args.repeats}"
    )
    if reference_batch is None:
        print(f"reference: not measured ({why})")
    torch.manual_seed(args.seed)
    embedders = [OurEmbedder(size, device)]
    if reference_batch is not None:
        torch.manual_seed(args.seed)
        embedders.append(ReferenceEmbedder(reference_batch, size, device))
    candidates: dict[str, Callable[[], object]] = {}
    for embedder in embedders:
        for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            candidates[f"{embedder.name} {label}"] = lambda e=embedder, d=dtype: e.tokens(
                view, args.patch, d
            )
    flops = {name: measure.count_flops(call) for name, call in candidates.items()}
    # Matmuls timed in the same rounds as the embeddings: peaks under the same load.
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        candidates[f"matmul {label}"], flops[f"matmul {label}"] = measure.matmul_call(dtype, device)
    timings = measure.time_interleaved(
        candidates,
        warmup=args.warmup,
        repeats=args.repeats,
        synchronize=measure.synchronizer(device),
    )
    peaks = {
        label: measure.peak_of(timings.pop(f"matmul {label}"), flops[f"matmul {label}"])
        for label in ("fp32", "bf16")
    }
    print(
        "matmul peak (2048^3, timed between the runs): "
        + ", ".join(f"{label} {peak.wall:.1f} GFLOP/s" for label, peak in peaks.items())
    )
    rows = []
    for name, timing in timings.items():
        seconds = timing.median
        rate = flops[name] / seconds / 1e9
        peak = peaks[name.split()[-1]]
        rows.append(
            [
                name,
                f"{seconds:.3f}",
                f"{timing.spread:.0%}",
                f"{timing.median_cpu:.3f}" if device.type == "cpu" else "-",
                f"{args.batch_size / seconds:.2f}",
                f"{tokens_per_batch / seconds:.0f}",
                f"{flops[name] / 1e9:.1f}",
                f"{rate:.1f}",
                f"{rate / peak.wall:.0%}",
            ]
        )
    header = ["run", "s/batch", "spread", "cpu s", "samples/s", "tokens/s", "GFLOP", "GFLOP/s"]
    print()
    print(measure.format_table([*header, "% peak"], rows))

    ours_fp32 = embedders[0].tokens(view, args.patch, torch.float32)
    ours_bf16 = embedders[0].tokens(view, args.patch, torch.bfloat16)
    sample_min, token_min, token_mean = cosine_report(ours_bf16, ours_fp32)
    print(
        f"\nours bf16 vs ours fp32 cosine similarity: per sample min {sample_min:.6f}; "
        f"per token min {token_min:.6f}, mean {token_mean:.6f}"
    )
    if len(embedders) == 2:
        ref_fp32 = embedders[1].tokens(view, args.patch, torch.float32)
        ref_bf16 = embedders[1].tokens(view, args.patch, torch.bfloat16)
        sample_min, token_min, token_mean = cosine_report(ref_bf16, ref_fp32)
        print(
            f"reference bf16 vs reference fp32 cosine similarity: per sample min "
            f"{sample_min:.6f}; per token min {token_min:.6f}, mean {token_mean:.6f}"
        )

        def speed(ours: str, theirs: str, clock: str = "median") -> str:
            return measure.ratio(getattr(timings[theirs], clock), getattr(timings[ours], clock))

        print("\nthroughput ratios (wall; CPU time in brackets)")
        for ours, theirs in (
            ("ours bf16", "reference fp32"),
            ("ours fp32", "reference fp32"),
            ("ours bf16", "reference bf16"),
        ):
            cpu = f" ({speed(ours, theirs, 'median_cpu')})" if device.type == "cpu" else ""
            print(f"  {ours} / {theirs}: {speed(ours, theirs)}{cpu}")
        # What no implementation of these FLOPs can beat: all of them at the bf16 matmul peak
        # (softmax, norms and casts free) against the reference's measured fp32 time.
        bound = flops["ours bf16"] / (peaks["bf16"].wall * 1e9)
        print(
            f"  bound for ours bf16 / reference fp32 (every FLOP at the bf16 matmul peak, "
            f"{bound:.3f} s/batch): {timings['reference fp32'].median / bound:.2f}x"
        )


COMMAND = command.Command("embed", FLAGS, run)
main = COMMAND.main


if __name__ == "__main__":
    COMMAND.run_app()

"""Full v1 training step, ours against the reference (olmoearth-pretrain 0.1.2).

    bazel run //tools/bench:train_step -- [--size base_shallow_decoder] [--patch 1,2,4,8] \
        [--device cpu|cuda] [--dtype fp32|bf16] [--batch-size 1] [--patches-per-side 4]
    bazel run //tools/bench:train_step -- --size nano        # quick mode (about a minute)

Both models are built at the same size from the v1 recipe (nine modalities, Conv patch
embeddings, drop_path 0.1, frozen random-projection target) and run the *same* masked batches
(tools/bench/batches.py: B instances of h x h patches, the most timesteps within the
2250-token budget, `modality_cross_random` twice). One step is what each project's contrastive
train module does: for view a and view b, the model forward and the target under no_grad
(inside bf16 autocast with --dtype bf16), the patch-discrimination losses in fp32 outside
autocast, InfoNCE (weight 0.1), backward, gradient clipping to norm 1, AdamW (lr 1e-4,
weight decay 0.02). The reference's optimizer is what its recipe builds (olmo-core
AdamWConfig(fused=False): PyTorch's per-tensor loop on CPU); ours is --our-optimizer
(default fused: the same maths, bit for bit, in one kernel; models/train's AdamWConfig gets
it with fused=True).

Per patch size it prints, as medians of --repeats interleaved steps after --warmup steps:
seconds per step (wall, and CPU time of the process: on a shared machine the CPU time is the
comparison that holds up), samples/s, tokens/s (each instance's tokens counted once, as the
budget counts them), GFLOP per step and GFLOP/s (tools/bench/measure.py), their fraction of
the peak of a 2048^3 matmul in the same dtype timed in the same rounds as the steps (per wall
second and per CPU second), MFU on a GPU (those FLOPs per wall second over the GPU's dense
peak in --dtype, tools/bench/mfu.py; --accelerator names the GPU when its device name is not
recognised), and peak memory (parameters, buffers, optimizer state and batch held before the
step, plus the most torch allocated during one steady-state step); then ours / reference
ratios (speed: > 1 means ours is faster).

Defaults keep a run to a few minutes on two idle cores: B = 1 and 4 x 4 patches (T = 12, 1248
tokens per instance). With B = 1 no sample is padded; --batch-size 4 (or more) shows what
skipping padding saves (samples of one batch keep different numbers of visible tokens). On a
machine shared with other jobs use --threads 1: two OpenMP threads that are descheduled in
turn spin-wait for each other (measured here: 3x the CPU time of one thread per step).

The --device cuda path synchronizes around every timed step and reads CUDA allocator peaks;
it has not been measured here (no GPU on the development machine); tools/bench/gpu_check.sh
runs it on the first GPU machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import types
from collections.abc import Callable

import torch
from absl import app, flags

from launcher.cli import command
from models.latent_mim import sizes
from models.latent_mim.latent_mim import LatentMIMConfig
from models.losses.info_nce import InfoNCELossConfig
from models.losses.patch_discrimination import ModalityPatchDiscriminationLossConfig
from models.modalities import modalities
from models.train import accelerators
from tools.bench import batches, measure, mfu
from tools.bench.reference import load_reference

TAU = 0.1
INFO_NCE_WEIGHT = 0.1
LR, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-4, 0.02, 1.0
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
OPTIMIZERS = ("fused", "foreach", "loop")


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16 autocast for the model; fp32 runs without autocast."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def adamw(params: list[torch.nn.Parameter], kind: str) -> torch.optim.AdamW:
    options = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}
    return torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY, **options[kind])


class TrainStep:
    """One implementation's model, optimizer and batch; calling it runs one training step."""

    name = ""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch) -> None:
        self.model = model
        self.optimizer = optimizer
        self.batch = batch

    def __call__(self) -> None:
        raise NotImplementedError

    def resident_bytes(self) -> int:
        return measure.resident_bytes(self.model, self.optimizer, *self.batch_tensors())

    def batch_tensors(self) -> list[torch.Tensor]:
        raise NotImplementedError


class OurTrainStep(TrainStep):
    """terra-lab: models/latent_mim + models/losses, as models/train runs one step."""

    name = "ours"

    def __init__(
        self,
        size: sizes.ModelSize,
        views: batches.TwoViews,
        device: torch.device,
        dtype: torch.dtype,
        optimizer: str,
    ) -> None:
        model = LatentMIMConfig.from_size(size).build().to(device).train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        views = batches.TwoViews(views.patch_size, views.view_a.to(device), views.view_b.to(device))
        super().__init__(model, adamw(trainable, optimizer), views)
        self.trainable = trainable
        self.device, self.dtype = device, dtype
        self.patch_loss = ModalityPatchDiscriminationLossConfig(tau=TAU).build()
        self.contrastive = InfoNCELossConfig(tau=TAU, weight=INFO_NCE_WEIGHT).build()

    def __call__(self) -> None:
        patch_size = self.batch.patch_size
        self.optimizer.zero_grad(set_to_none=True)
        outputs, targets = [], []
        with autocast(self.device, self.dtype):
            for view in self.batch.views:
                outputs.append(self.model(view, patch_size))
                targets.append(self.model.target_tokens(view, patch_size))
        with torch.autocast(self.device.type, enabled=False):
            patch_a = self.patch_loss(outputs[0].decoded, targets[0])
            patch_b = self.patch_loss(outputs[1].decoded, targets[1])
            loss = (patch_a + patch_b) / 2 + self.contrastive(outputs[0].pooled, outputs[1].pooled)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, MAX_GRAD_NORM)
        self.optimizer.step()

    def batch_tensors(self) -> list[torch.Tensor]:
        return [
            tensor
            for view in self.batch.views
            for tensor in [*view.data.values(), *view.masks.values(), view.timestamps]
        ]


class ReferenceTrainStep(TrainStep):
    """olmoearth-pretrain 0.1.2: its LatentMIM and losses, as its ContrastiveLatentMIM module."""

    name = "reference"

    def __init__(
        self,
        reference_batch,
        size: sizes.ModelSize,
        views: batches.TwoViews,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        from olmoearth_pretrain.train.loss import InfoNCELoss, ModalityPatchDiscriminationLoss

        model = reference_batch.build_reference(size, drop_path=0.1).to(device).train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        samples = [reference_batch.to_reference_sample(view.to(device)) for view in views.views]
        # olmo-core's AdamWConfig(fused=False) leaves foreach to PyTorch: a loop on CPU.
        optimizer = torch.optim.AdamW(trainable, lr=LR, weight_decay=WEIGHT_DECAY, fused=False)
        super().__init__(model, optimizer, (views.patch_size, *samples))
        self.trainable = trainable
        self.device, self.dtype = device, dtype
        self.patch_loss = ModalityPatchDiscriminationLoss(tau=TAU)
        self.contrastive = InfoNCELoss(tau=TAU, weight=INFO_NCE_WEIGHT)
        self.token_exit = {name: 0 for name in reference_batch.V1_MODALITIES}

    def _view(self, sample):
        patch_size = self.batch[0]
        with autocast(self.device, self.dtype):
            _, decoded, pooled, _, _ = self.model(sample, patch_size)
            with torch.no_grad():
                target = self.model.target_encoder(
                    sample.unmask(), patch_size=patch_size, token_exit_cfg=self.token_exit
                )["tokens_and_masks"]
            with torch.autocast(self.device.type, enabled=False):
                loss = self.patch_loss.compute(decoded, target)
        return loss, pooled

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss_a, pooled_a = self._view(self.batch[1])
        loss_b, pooled_b = self._view(self.batch[2])
        loss = (loss_a + loss_b) / 2 + self.contrastive.compute(pooled_a, pooled_b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, MAX_GRAD_NORM)
        self.optimizer.step()

    def batch_tensors(self) -> list[torch.Tensor]:
        return [
            value
            for sample in self.batch[1:]
            for value in sample.as_dict().values()
            if isinstance(value, torch.Tensor)
        ]


@dataclasses.dataclass
class Result:
    name: str
    timings: measure.Timings
    flops: int
    peak_bytes: int


PEAK = "matmul peak"


def measure_steps(
    steps: list[TrainStep],
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    repeats: int,
) -> tuple[list[Result], measure.Peak]:
    """Warm-up, one instrumented step each (FLOPs and memory), then interleaved timing.

    A matmul of `dtype` is timed in the same rounds, so the peak it gives was measured under
    the same load as the steps.
    """
    sync = measure.synchronizer(device)
    for _ in range(warmup):
        for step in steps:
            step()
    instrumented = {}
    for step in steps:
        resident = step.resident_bytes()
        holder: dict[str, int] = {}

        def counted(step: Callable[[], None] = step, holder: dict[str, int] = holder) -> None:
            holder["flops"] = measure.count_flops(step)

        transient = measure.peak_memory_bytes(counted, device)
        instrumented[step.name] = (holder["flops"], resident + transient)
    matmul, matmul_flops = measure.matmul_call(dtype, device)
    candidates: dict[str, Callable[[], object]] = {step.name: step for step in steps}
    candidates[PEAK] = matmul
    timings = measure.time_interleaved(candidates, warmup=1, repeats=repeats, synchronize=sync)
    results = [Result(step.name, timings[step.name], *instrumented[step.name]) for step in steps]
    return results, measure.peak_of(timings[PEAK], matmul_flops)


FLAGS = flags.FlagValues()
flags.DEFINE_enum(
    "size", "base_shallow_decoder", list(sizes.MODEL_SIZES), "model size", flag_values=FLAGS
)
flags.DEFINE_list(
    "patch", ["1", "2", "4", "8"], "comma-separated patch sizes 1..8", flag_values=FLAGS
)
flags.DEFINE_enum("device", "cpu", ["cpu", "cuda"], "where to run", flag_values=FLAGS)
flags.DEFINE_enum("dtype", "fp32", list(DTYPES), "compute dtype", flag_values=FLAGS)
flags.DEFINE_integer(
    "batch-size",
    None,
    "instances per batch (default: 1; nano: 2)",
    flag_values=FLAGS,
    lower_bound=1,
)
flags.DEFINE_integer(
    "patches-per-side",
    4,
    "h = w of the crop; T is the most timesteps within --token-budget (4: T = 12, 1248 tokens "
    "per instance; 8: T = 4, 1920)",
    flag_values=FLAGS,
    lower_bound=1,
)
flags.DEFINE_integer("token-budget", 2250, "tokens per instance", flag_values=FLAGS, lower_bound=1)
flags.DEFINE_integer("warmup", 1, "untimed steps first", flag_values=FLAGS, lower_bound=0)
flags.DEFINE_integer(
    "repeats", None, "timed steps (default: 3; nano: 5)", flag_values=FLAGS, lower_bound=1
)
flags.DEFINE_enum("our-optimizer", "fused", list(OPTIMIZERS), "our AdamW", flag_values=FLAGS)
flags.DEFINE_integer(
    "threads", None, "torch threads (default: all cores)", flag_values=FLAGS, lower_bound=1
)
flags.DEFINE_boolean("no-reference", False, "time ours only", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "seed of the batches", flag_values=FLAGS)
flags.DEFINE_string(
    "accelerator",
    None,
    "GPU whose dense peak MFU is quoted against (models/train/accelerators.py; default: the "
    "CUDA device's own entry)",
    flag_values=FLAGS,
)


def resolve_defaults(args: types.SimpleNamespace) -> types.SimpleNamespace:
    """`args` with the size-dependent defaults filled in and `patch_sizes` from --patch."""
    quick = args.size == "nano"
    if args.batch_size is None:
        args.batch_size = 2 if quick else 1
    if args.repeats is None:
        args.repeats = 5 if quick else 3
    patch = ",".join(args.patch)
    if not all(p.strip().isdigit() and 1 <= int(p) <= 8 for p in args.patch):
        raise app.UsageError(f"--patch values must be in 1..8, got {patch}")
    args.patch_sizes = [int(p) for p in args.patch]
    args.patch = patch
    if args.accelerator:
        try:
            accelerators.get(args.accelerator)
        except ValueError as error:
            raise app.UsageError(f"--accelerator: {error}") from None
    return args


def run(args: types.SimpleNamespace) -> None:
    args = resolve_defaults(args)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    size = sizes.get_size(args.size)
    reference_batch, why = (None, "--no-reference") if args.no_reference else load_reference()
    print(
        f"train_step: size {args.size}, device {device}, dtype {args.dtype}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, batch {args.batch_size}, "
        f"h = w = {args.patches_per_side} patches, warmup {args.warmup}, repeats {args.repeats}, "
        f"our optimizer {args.our_optimizer}"
    )
    if reference_batch is None:
        print(f"reference: not measured ({why})")
    accelerator, chosen = mfu.resolve_accelerator(device, args.accelerator)
    if accelerator is None:
        print(chosen)
    else:
        print(
            f"MFU against {chosen}: {accelerator.peak_flops(dtype) / 1e12:.1f} TFLOP/s dense "
            f"{args.dtype} peak"
        )
    on_cpu = device.type == "cpu"
    header = ["P", "impl", "s/step", "spread", "cpu s/step", "samples/s", "tokens/s"]
    header += ["GFLOP", "GFLOP/s", "% peak", "GFLOP/cpu-s", "% peak (cpu)", "MFU", "peak MB"]
    rows, ratio_rows = [], []
    for patch_size in args.patch_sizes:
        shape = batches.budget_shape(
            args.batch_size, patch_size, args.patches_per_side, args.token_budget
        )
        views = batches.masked_views(shape, seed=args.seed)
        counts = [batches.token_counts(view, patch_size) for view in views.views]
        tokens = counts[0].total  # per batch, each instance counted once
        print(
            f"P={patch_size}: T={shape.timesteps}, {shape.pixels_per_side}px, "
            f"{tokens // args.batch_size} tokens/instance; encoder/decoder tokens per view "
            + ", ".join(f"{c.encoder}/{c.decoder}" for c in counts),
            flush=True,
        )
        torch.manual_seed(args.seed)
        steps: list[TrainStep] = [OurTrainStep(size, views, device, dtype, args.our_optimizer)]
        if reference_batch is not None:
            torch.manual_seed(args.seed)
            steps.append(ReferenceTrainStep(reference_batch, size, views, device, dtype))
        results, peak = measure_steps(steps, device, dtype, args.warmup, args.repeats)
        print(
            f"  {args.dtype} matmul peak (2048^3, timed between the steps): "
            f"{peak.wall:.1f} GFLOP/s"
            + (f", {peak.cpu:.1f} GFLOP per CPU-second" if on_cpu else ""),
            flush=True,
        )
        for result in results:
            wall, cpu = result.timings.median, result.timings.median_cpu
            rate, cpu_rate = result.flops / wall / 1e9, result.flops / cpu / 1e9
            rows.append(
                [
                    patch_size,
                    result.name,
                    f"{wall:.3f}",
                    f"{result.timings.spread:.0%}",
                    f"{cpu:.3f}" if on_cpu else "-",
                    f"{args.batch_size / wall:.3f}",
                    f"{tokens / wall:.0f}",
                    f"{result.flops / 1e9:.1f}",
                    f"{rate:.1f}",
                    f"{rate / peak.wall:.0%}",
                    f"{cpu_rate:.1f}" if on_cpu else "-",
                    f"{cpu_rate / peak.cpu:.0%}" if on_cpu else "-",
                    f"{mfu.mfu(result.flops, wall, accelerator.peak_flops(dtype)):.1%}"
                    if accelerator is not None
                    else "-",
                    f"{result.peak_bytes / 2**20:.0f}",
                ]
            )
        if len(results) == 2:
            ours, theirs = results
            ratio_rows.append(
                [
                    patch_size,
                    measure.ratio(theirs.timings.median, ours.timings.median),
                    measure.ratio(theirs.timings.median_cpu, ours.timings.median_cpu)
                    if on_cpu
                    else "-",
                    measure.ratio(ours.flops, theirs.flops),
                    measure.ratio(ours.peak_bytes, theirs.peak_bytes),
                ]
            )
        print(measure.format_table(header, rows[-len(results) :]), flush=True)
        del steps
    print()
    print(measure.format_table(header, rows))
    if ratio_rows:
        print()
        print("ours / reference (speed > 1: ours faster; memory < 1: ours smaller)")
        print(
            measure.format_table(
                ["P", "speed (wall)", "speed (cpu)", "FLOPs", "peak memory"], ratio_rows
            )
        )
    print(
        "\nspread = (max - min) / median of the timed steps; on a shared machine a large spread "
        "means other processes took CPU time. Modalities: "
        + ", ".join(modalities.TRAINING_MODALITIES)
    )


COMMAND = command.Command("train_step", FLAGS, run)
main = COMMAND.main


if __name__ == "__main__":
    COMMAND.run_app()

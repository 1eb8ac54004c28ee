"""Per-modality projections: base against a Linear(D, D) per modality in the encoder, in the
decoder, and in both (the guide's study; plan: experiments/plans/per_modality_projection.plan.md).

    ./tools/bazel run //experiments/studies:per_modality_projection -- dry_run slurm
    ./tools/bazel run //experiments/studies:per_modality_projection -- launch slurm
    ./tools/bazel run //experiments/studies:per_modality_projection -- compare slurm

On `local` every run is nano-sized with the CPU quickstart's step (batch 8, token budget 300,
warmup 20) for 150 steps: 12 runs take about 20 minutes on 2 cores.
"""

from experiments import (
    base,
    base_both_per_mod_proj,
    base_decoder_per_mod_proj,
    base_encoder_per_mod_proj,
)
from experiments.framework.study import Study
from experiments.framework.study_cli import main
from launcher.settings import LaunchSettings

STUDY = Study(
    name="per_modality_projection",
    hypothesis=(
        "A Linear(D, D) per modality lets each modality refine its own features: lower "
        "patch-discrimination loss and better probes than base, in the encoder, the decoder "
        "or both"
    ),
    baseline=base,
    variants=(base_encoder_per_mod_proj, base_decoder_per_mod_proj, base_both_per_mod_proj),
    seeds=(0, 1, 2),
    launch=LaunchSettings(num_gpus=8),
    project="per_modality_projection_experiments",
    cluster_overrides={
        "local": (
            "--model_size=nano",
            "--launch.num_gpus=1",
            "--trainer.max_steps=150",
            "--data_loader.global_batch_size=8",
            "--data_loader.token_budget=300",
            "--train_module.microbatch_size=8",
            "--train_module.scheduler.warmup_steps=20",
        ),
    },
)

if __name__ == "__main__":
    main(STUDY)

"""bf16 autocast against fp32: the same weights and batch through one v1 training step.

What the GPU recipe runs (models/train/train_module.py: autocast "auto" = bf16 on CUDA, the
losses in fp32 outside autocast) must agree with the fp32 step within the rounding bf16 allows.
It runs on the `device` fixture (conftest.py): the CPU here, CUDA under
TERRA_LAB_TEST_DEVICE=cuda (tools/bench/gpu_check.sh), skipped with the reason where that
device is absent. `-rP` prints the measured errors.

Compared: encoder tokens at ONLINE_ENCODER positions, the pooled vectors, the predictions at
DECODER positions (each as the relative error ||bf16 - fp32|| / ||fp32|| over the positions
read), the patch-discrimination and InfoNCE losses, and the gradient of the total loss.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.latent_mim import sizes
from models.latent_mim.latent_mim import LatentMIMConfig
from models.losses.info_nce import InfoNCELossConfig
from models.losses.patch_discrimination import ModalityPatchDiscriminationLossConfig
from models.modalities.samples import MaskedSample, MaskValue
from models.nn import testing

# bf16 keeps 8 significant bits: one rounding is off by at most 2^-9 = 0.2% relative. Matmuls
# accumulate in fp32 under autocast, so each layer adds about one rounding of its inputs and
# weights; independent roundings add in quadrature over the nano encoder's and predictor's
# blocks, and the pre-norm residual stream keeps them from compounding. Measured on the 2-core
# CPU (AVX512-BF16): encoder tokens 0.59%, pooled 0.59%, predictions 0.71% (relative norm of
# the difference). The bounds are 4-5x that: room for CUDA's kernels (flash attention keeps
# its softmax statistics in fp32 but rounds the probabilities to bf16 before AV), not for a
# systematic error such as a LayerNorm or softmax computed in bf16.
RELATIVE_TOLERANCE = {"encoder tokens": 0.03, "pooled": 0.03, "predictions": 0.03}
LOSS_RELATIVE_TOLERANCE = 0.005
"""The losses run in fp32 on the bf16 outputs and average over hundreds of tokens, so the
per-token errors mostly cancel: measured 0.02% (patch discrimination) and 0.05% (InfoNCE);
the bound is 10x the larger."""
GRADIENT_RELATIVE_TOLERANCE = 0.04
"""||grad bf16 - grad fp32|| / ||grad fp32|| over all trainable parameters: backward rounds
once more per layer than forward; measured 0.93%, the bound is 4x that."""

PATCH_SIZE, PIXELS, STEPS, BATCH = 2, 8, 3, 4
"""4 x 4 patches x 3 timesteps per sample: a few hundred tokens per view, enough for the
per-token errors of the losses to average the way a real batch's do."""
TAU, INFO_NCE_WEIGHT = 0.1, 0.1


def _views() -> tuple[MaskedSample, MaskedSample]:
    common = dict(batch=BATCH, size=PIXELS, steps=STEPS, patch_size=PATCH_SIZE)
    return testing.random_masked_sample(**common, seed=0), testing.random_masked_sample(
        **common, seed=1
    )


def _model(device: torch.device) -> torch.nn.Module:
    """Nano with drop_path 0 (the two passes must see the same network); every parameter
    perturbed so zero-initialised ones (mask token, channel embeddings) carry signal."""
    config = LatentMIMConfig.from_size(sizes.get_size("nano"))
    config = dataclasses.replace(config, encoder=dataclasses.replace(config.encoder, drop_path=0))
    torch.manual_seed(0)
    model = config.build()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "month_embed" not in name:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.to(device).train()


def _step(model, views, device: torch.device, dtype: torch.dtype | None) -> dict:
    """One step as the train module runs it: model under autocast (`dtype`; None: fp32),
    losses in fp32 outside it; returns the compared quantities in fp32 on the CPU."""
    patch_loss = ModalityPatchDiscriminationLossConfig(tau=TAU).build()
    contrastive = InfoNCELossConfig(tau=TAU, weight=INFO_NCE_WEIGHT).build()
    model.zero_grad(set_to_none=True)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    with autocast:
        outputs = [model(view, PATCH_SIZE) for view in views]
        targets = [model.target_tokens(view, PATCH_SIZE) for view in views]
    with torch.autocast(device.type, enabled=False):
        patch = [patch_loss(o.decoded, t) for o, t in zip(outputs, targets, strict=True)]
        info_nce = contrastive(outputs[0].pooled, outputs[1].pooled)
        loss = (patch[0] + patch[1]) / 2 + info_nce
    loss.backward()
    gradient = torch.cat(
        [p.grad.flatten() for p in model.parameters() if p.requires_grad and p.grad is not None]
    )
    first = outputs[0]

    def read(tokens_and_masks, value: MaskValue) -> torch.Tensor:
        rows = [
            tokens[mask == value]
            for _, tokens, mask in tokens_and_masks.items()
            if (mask == value).any()
        ]
        return torch.cat(rows).float().cpu()

    return {
        "encoder tokens": read(first.latent, MaskValue.ONLINE_ENCODER),
        "pooled": first.pooled.float().cpu(),
        "predictions": read(first.decoded, MaskValue.DECODER),
        "patch discrimination": patch[0].detach().float().cpu(),
        "InfoNCE": info_nce.detach().float().cpu(),
        "gradient": gradient.float().cpu(),
    }


def _relative(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference.double()).norm() / reference.double().norm()).item()


def test_bf16_autocast_step_matches_fp32_within_bf16_rounding(device) -> None:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name(device)} has no bf16 support")
    views = [view.to(device) for view in _views()]
    model = _model(device)
    fp32 = _step(model, views, device, None)
    bf16 = _step(model, views, device, torch.bfloat16)
    errors = {name: _relative(bf16[name], fp32[name]) for name in fp32}
    print(f"bf16 vs fp32 on {device}: " + ", ".join(f"{k} {v:.2%}" for k, v in errors.items()))
    assert fp32["encoder tokens"].shape == bf16["encoder tokens"].shape
    assert fp32["encoder tokens"].shape[0] > 100  # enough tokens for the losses to average
    for name, tolerance in RELATIVE_TOLERANCE.items():
        assert errors[name] < tolerance, (name, errors[name])
    for name in ("patch discrimination", "InfoNCE"):
        assert errors[name] < LOSS_RELATIVE_TOLERANCE, (name, errors[name])
    assert errors["gradient"] < GRADIENT_RELATIVE_TOLERANCE, errors["gradient"]
    # bf16 actually ran: a pass that silently stayed in fp32 would agree to ~1e-6.
    assert errors["encoder tokens"] > 1e-4, errors["encoder tokens"]

"""`visualize`: what the model saw and what it predicted, one PNG per instance.

One row per modality of the instance (at the band set and timestep with the most tokens to
predict), six panels:
    input        the data (S2 and Landsat as RGB, S1 as VV, maps as their first band)
    mask         per patch: green = encoder sees it, orange = decoder predicts it,
                 grey = target only, black = no data
    encoder view the input with everything the encoder does not see greyed out
    target       the frozen target's latent per patch, as RGB of its 3 principal components
    prediction   the decoder's latent at the orange patches, on the same 3 components (so
                 a good prediction has the colours of the target)
    cosine       cosine similarity of prediction and target at the orange patches (0..1)
Latents have no pixels to show: the shared principal-component basis is what makes the
target and prediction panels comparable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch

from experiments.framework import inspection
from experiments.framework.errors import CommandError
from experiments.framework.experiment_config import ExperimentConfig

if TYPE_CHECKING:
    from experiments.framework.resolution import Invocation

RGB_BANDS = {"sentinel2_l2a": ("B04", "B03", "B02"), "landsat": ("B4", "B3", "B2")}
MASK_COLOURS = {0: (0.2, 0.7, 0.3), 1: (0.6, 0.6, 0.6), 2: (1.0, 0.55, 0.1), 3: (0.0, 0.0, 0.0)}
MAX_ROWS = 6


def _stretch(image: np.ndarray) -> np.ndarray:
    """Per-channel 2-98 percentile stretch to [0, 1]; NaN (no data) stays NaN."""
    out = np.empty_like(image, dtype=np.float64)
    for c in range(image.shape[-1]):
        channel = image[..., c]
        finite = channel[np.isfinite(channel)]
        if finite.size == 0:
            out[..., c] = np.nan
            continue
        low, high = np.percentile(finite, [2, 98])
        out[..., c] = np.clip((channel - low) / max(high - low, 1e-6), 0, 1)
    return out


def _display_bands(name: str, spec: Any) -> list[int]:
    wanted = RGB_BANDS.get(name)
    if wanted and all(band in spec.storage_bands for band in wanted):
        return [spec.storage_bands.index(band) for band in wanted]
    return [0]


def _pca_basis(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, 3 principal directions) of [N, D] tokens."""
    mean = tokens.mean(axis=0)
    _, _, vt = np.linalg.svd(tokens - mean, full_matrices=False)
    basis = vt[:3]
    if basis.shape[0] < 3:
        basis = np.pad(basis, ((0, 3 - basis.shape[0]), (0, 0)))
    return mean, basis


def _project(tokens: np.ndarray, mean: np.ndarray, basis: np.ndarray, scale: np.ndarray) -> Any:
    return np.clip((tokens - mean) @ basis.T / scale + 0.5, 0, 1)


def draw_instance(
    view: Any, decoded: Any, target: Any, b: int, patch_size: int, title: str, out_path: Path
) -> Path:
    """Render instance `b` of a masked view with its predictions and targets to a PNG."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from models.modalities import modalities
    from models.modalities.samples import MaskValue

    names = [n for n in view.modality_names if modalities.get(n).is_spatial][:MAX_ROWS]
    names = [n for n in names if n in target.tokens]
    columns = ("input", "mask", "encoder view", "target", "prediction", "cosine")
    figure = Figure(figsize=(2.2 * len(columns), 2.2 * max(len(names), 1)), dpi=90)
    FigureCanvasAgg(figure)
    for row, name in enumerate(names):
        spec = modalities.get(name)
        data = view.data[name][b].float().numpy()  # [H, W, T, C]
        masks = view.masks[name][b].numpy()  # [H, W, T, S]
        # The band set and timestep with the most tokens to predict: the informative slice.
        decoder_counts = (masks[::patch_size, ::patch_size] == MaskValue.DECODER).sum(axis=(0, 1))
        t, s = np.unravel_index(int(np.argmax(decoder_counts)), decoder_counts.shape)
        mask = masks[..., s]  # [H, W, T]
        tokens_t = target.tokens[name][b, ..., s, :].float().numpy()  # [h, w, T, D]
        tokens_p = decoded.tokens[name][b, ..., s, :].float().numpy()
        patch_mask = mask[::patch_size, ::patch_size]  # [h, w, T]
        image = data[:, :, t][..., _display_bands(name, spec)]
        image = np.where(image <= -9999, np.nan, image)  # MISSING_VALUE -> no data
        rgb = _stretch(image)
        if rgb.shape[-1] == 1:
            rgb = np.repeat(rgb, 3, axis=-1)
        rgb = np.nan_to_num(rgb, nan=0.0)
        colours = np.zeros((*patch_mask.shape[:2], 3))
        for value, colour in MASK_COLOURS.items():
            colours[patch_mask[..., t] == value] = colour
        seen = (mask[:, :, t] == MaskValue.ONLINE_ENCODER)[..., None]
        encoder_view = np.where(seen, rgb, 0.5)
        present = patch_mask[..., t] != MaskValue.MISSING
        decode = patch_mask[..., t] == MaskValue.DECODER
        target_t, pred_t = tokens_t[:, :, t], tokens_p[:, :, t]  # [h, w, D]
        target_rgb = np.full((*present.shape, 3), 0.5)
        pred_rgb = np.full((*present.shape, 3), 0.5)
        cosine = np.full(present.shape, np.nan)
        if present.sum() >= 2:
            mean, basis = _pca_basis(target_t[present])
            scale = np.abs((target_t[present] - mean) @ basis.T).max(axis=0) * 2 + 1e-6
            target_rgb[present] = _project(target_t[present], mean, basis, scale)
            if decode.any():
                pred_rgb[decode] = _project(pred_t[decode], mean, basis, scale)
                a = torch.nn.functional.normalize(torch.from_numpy(pred_t[decode]), dim=-1)
                c = torch.nn.functional.normalize(torch.from_numpy(target_t[decode]), dim=-1)
                cosine[decode] = (a * c).sum(-1).numpy()
        panels = (rgb, colours, encoder_view, target_rgb, pred_rgb, cosine)
        for col, panel in enumerate(panels):
            axes = figure.add_subplot(len(names), len(columns), row * len(columns) + col + 1)
            if col == 5:
                # Grey where nothing is predicted (NaN).
                cmap = colormaps["viridis"].with_extremes(bad=(0.5, 0.5, 0.5))
                axes.imshow(panel, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            else:
                axes.imshow(panel, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(columns[col], fontsize=9)
            if col == 0:
                axes.set_ylabel(f"{name}\nband set {s}, t={t}", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path)
    return out_path


@torch.no_grad()
def visualize(config: ExperimentConfig, checkpoint: Path | None, out_dir: Path) -> list[Path]:
    """Draw `config.visualize.num_samples` instances; returns the PNG paths."""
    settings = config.visualize
    model, step = inspection.load_model(config, checkpoint)
    dataset = inspection.open_dataset(config)
    indices = inspection.pick_indices(len(dataset), settings.num_samples, settings.seed)
    inputs = inspection.FixedInputs(
        indices, settings.patch_size, settings.patches_per_side, settings.seed
    )
    batch = inspection.fixed_batch(config, dataset, inputs)
    view, size = batch.view_a, batch.patch_size
    out = model(view, size)
    target = model.target_tokens(view, size)
    paths = []
    for b, index in enumerate(indices):
        title = f"{config.experiment} / {config.run_name} - step {step} - instance {index}"
        paths.append(
            draw_instance(
                view, out.decoded, target, b, size, title, out_dir / f"sample_{index}.png"
            )
        )
    return paths


def visualize_command(invocation: Invocation, stdout: TextIO, stderr: TextIO) -> int:
    config = invocation.config
    try:
        checkpoint = inspection.require_checkpoint(
            config, config.visualize.checkpoint, invocation.untrained, "visualize"
        )
    except inspection.NoCheckpointError as error:
        raise CommandError(str(error), exit_code=2) from error
    if checkpoint is None:
        print(
            f"warning: {inspection.run_dir(config)} has no checkpoint; drawing the untrained model",
            file=stderr,
        )
    step = 0 if checkpoint is None else int(checkpoint.name.rpartition("_")[2])
    out_dir = Path(
        config.visualize.output_dir
        or inspection.run_dir(config) / "visualizations" / f"step_{step}"
    )
    paths = visualize(config, checkpoint, out_dir)
    print(f"wrote {len(paths)} PNGs to {out_dir}:", file=stdout)
    for path in paths:
        print(f"  {path}", file=stdout)
    return 0

"""Synthetic study folders for tests: run folders and a study.json, no training.

Each run logs a decaying loss for `steps` steps and, at its last step, downstream scores. A
seed adds the same shift to every variant of that seed (what a shared seed does: same data
order, same initial weights), and a little noise of its own, so paired deltas are tighter than
the per-variant spreads, as in a real study.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

KNN = "eval/landcover/knn_accuracy"
MIOU = "eval/landcover/seg_miou"
STUDY = "per_modality_projection"
PROJECT = "2026_12_03_per_modality_projection"


def write_run(
    folder: Path,
    seed: int,
    loss_scale: float,
    scores: Mapping[str, float],
    steps: int = 40,
    noise: float = 0.002,
) -> None:
    """One run folder: metrics.jsonl (loss per step, scores at the last) and config.yaml."""
    folder.mkdir(parents=True)
    rng = random.Random(f"{folder.name}/{seed}")
    seed_shift = random.Random(seed).uniform(-0.05, 0.05)  # shared by every variant of a seed
    lines = []
    for step in range(1, steps + 1):
        loss = loss_scale * (1.0 + 4.0 / step) + seed_shift + rng.gauss(0.0, noise)
        record = {"step": step, "loss": loss}
        if step == steps:
            for key, value in scores.items():
                record[key] = value + seed_shift + rng.gauss(0.0, noise)
            record["eval/landcover/seconds"] = 1.5  # a timing: not a metric to compare
        lines.append(json.dumps(record))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    config = {"experiment": folder.name.rsplit("_s", 1)[0], "seed": seed}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def write_study(
    run_root: Path,
    variants: Mapping[str, tuple[float, Mapping[str, float]]],
    seeds: Sequence[int] = (0, 1, 2),
    grid: Mapping[str, Sequence[float]] | None = None,
    skip: Sequence[str] = (),
    noise: float = 0.002,
) -> Path:
    """Run folders of every (variant, grid point, seed) and the manifest; returns its path.

    variants: name -> (loss scale, downstream scores); the first is the baseline. grid: one
    key's values (a label per value), applied the same way to every variant. skip: run names
    listed in the manifest whose folders are not written (a run that never started).
    """
    project_dir = run_root / PROJECT
    names = list(variants)
    points = [("", {})]
    if grid:
        ((key, values),) = grid.items()
        points = [(f"{key.rsplit('.', 1)[-1]}{value:g}", {key: value}) for value in values]
    entries = []
    for variant, (loss_scale, scores) in variants.items():
        for label, point in points:
            for seed in seeds:
                name = f"{variant}_s{seed}" + (f"_{label}" if label else "")
                folder = project_dir / name
                if name not in skip:
                    write_run(folder, seed, loss_scale, scores, noise=noise)
                entries.append(
                    {
                        "name": name,
                        "variant": variant,
                        "seed": seed,
                        "grid": point,
                        "grid_label": label,
                        "run_dir": str(folder),
                        "job_id": f"{len(entries)}_0",
                        "overrides": [f"--seed={seed}"],
                        "submitted": "2026-12-03T15:00:01+00:00",
                    }
                )
    manifest = {
        "format": 1,
        "study": STUDY,
        "hypothesis": "per-modality projections help the encoder",
        "baseline": names[0],
        "variants": names,
        "seeds": list(seeds),
        "grid": {key: list(values) for key, values in (grid or {}).items()},
        "project": PROJECT,
        "cluster": "local",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "image": "127.0.0.1:5000/terra-lab@sha256:" + "ab" * 32,
        "launched": "2026-12-03T15:00:00+00:00",
        "runs": entries,
    }
    path = project_dir / "_studies" / STUDY / "study.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest, indent=1))
    return path

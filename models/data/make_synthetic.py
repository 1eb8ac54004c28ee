"""Writes a synthetic Earth dataset (models.data.synthetic) in the OlmoEarth H5 layout.

Example (the default dataset's size: 128 samples of 64 x 64 px, 12 months, ~1.3 MB each):
    bazel run //models/data:make_synthetic -- --out /tmp/synthetic --samples 128 --seed 0
The sample directory is printed on the last line of stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from models.data import synthetic
from models.data.h5_format import CompressionConfig


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="tile path the dataset folder goes under")
    parser.add_argument("--samples", type=int, required=True, help="number of samples")
    parser.add_argument("--seed", type=int, default=synthetic.DEFAULT_SEED)
    parser.add_argument("--size", type=int, default=64, help="pixels per side (10 m each)")
    parser.add_argument("--timesteps", type=int, default=12, help="monthly steps, 1..12")
    parser.add_argument(
        "--compression",
        choices=("gzip", "zstd", "none"),
        default="gzip",
        help="zstd needs the optional hdf5plugin package",
    )
    parser.add_argument("--compression-level", type=int, default=4)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compression == "none":
        compression = CompressionConfig()
    else:
        compression = CompressionConfig(
            algorithm=args.compression, level=args.compression_level, shuffle=True
        )
    config = synthetic.SyntheticEarthConfig(
        seed=args.seed, size=args.size, timesteps=args.timesteps, compression=compression
    )
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-9)
        end = "\n" if done == total else ""
        print(
            f"\rwrote {done}/{total} samples ({rate:.1f} samples/s)",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    h5_dir = synthetic.write_synthetic_dataset(args.out, args.samples, args.seed, config, progress)
    print(h5_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The real image, twice from scratch: two fresh clones of this repository, same digest.

Manual (about 6 minutes on 2 cores; needs root for debootstrap and network for the Debian
mirror and PyPI): `./tools/bazel test //launcher/image:reproducibility_real_test`.
Each clone builds with an empty cache of its own, so the base layer (debootstrap) and the
dependency layer (pip install of the whole lock) are both rebuilt, then all three layers
and the manifest are compared. Times are printed for the record.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

from launcher import clusters, testing
from launcher.image import build

SOURCE = Path(__file__).resolve().parents[2]


def test_two_fresh_clones_build_the_same_real_image_from_empty_caches():
    root = Path(tempfile.mkdtemp(prefix="repro-", dir=testing.real_home() / ".cache"))
    try:
        work = testing.scratch_workspace(SOURCE, root / "ws")
        settings = clusters.load(work)
        images, seconds = [], []
        for name in ("a", "b"):
            clone = testing.clone(root / "ws" / "origin.git", root / f"clone-{name}")
            os.umask(0o022 if name == "a" else 0o077)
            start = time.monotonic()
            images.append(
                build.build_image(
                    clone,
                    source_url=settings.image.source,
                    base_recipe=settings.image.base_recipe(),
                    cache_dir=root / f"cache-{name}",
                )
            )
            seconds.append(time.monotonic() - start)
        os.umask(0o022)
        first, second = images
        for layer in first.layers:
            print(f"layer {layer.name}: {layer.size / 1e6:.1f} MB {layer.digest}")
        print(f"build times from empty caches: {seconds[0]:.0f} s and {seconds[1]:.0f} s")
        assert [layer.digest for layer in first.layers] == [layer.digest for layer in second.layers]
        assert first.manifest_digest == second.manifest_digest
    finally:
        shutil.rmtree(root, ignore_errors=True)

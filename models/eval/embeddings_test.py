"""Evaluation embeddings: input modalities only, mean pooling, independence of the batch."""

import numpy as np
import pytest
import torch

from models.data.dataset import DatasetItem
from models.encoder.encoder import EncoderConfig
from models.eval import embeddings
from models.modalities import modalities
from models.modalities.samples import MaskValue

NAMES = ("sentinel2_l2a", "sentinel1", "worldcover")


def _encoder(drop_path: float = 0.0):
    torch.manual_seed(0)
    config = EncoderConfig(
        width=16, depth=1, num_heads=2, drop_path=drop_path, supported_modalities=NAMES
    )
    return config.build()


def _item(index: int, missing_steps: tuple[int, ...] = (), size: int = 4, steps: int = 3):
    rng = np.random.default_rng(index)
    data = {}
    for name in NAMES:
        spec = modalities.get(name)
        time_axis = steps if spec.is_multitemporal else 1
        values = rng.normal(size=(size, size, time_axis, spec.num_bands)).astype(np.float32)
        if spec.is_multitemporal:
            values[:, :, list(missing_steps)] = modalities.MISSING_VALUE
        data[name] = values
    timestamps = np.stack([np.ones(steps), np.arange(steps), np.full(steps, 2020)], -1)
    return DatasetItem(index, "", 2, data, timestamps.astype(np.int64))


def test_a_samples_embedding_alone_equals_it_batched_with_a_sample_missing_timesteps() -> None:
    encoder = _encoder(drop_path=0.5)  # eval mode must also switch drop path off
    full, gappy = _item(0), _item(1, missing_steps=(1, 2))
    alone = embeddings.embed_items(encoder, [full], patch_size=2, batch_size=1)
    together = embeddings.embed_items(encoder, [full, gappy], patch_size=2, batch_size=2)
    assert torch.allclose(alone.pooled[0], together.pooled[0], atol=1e-5, rtol=0)
    assert torch.allclose(alone.patches[0], together.patches[0], atol=1e-5, rtol=0)
    gappy_alone = embeddings.embed_items(encoder, [gappy], patch_size=2, batch_size=1)
    assert torch.allclose(gappy_alone.pooled[0], together.pooled[1], atol=1e-5, rtol=0)


def test_bf16_embeddings_follow_fp32_and_leave_the_encoder_in_fp32() -> None:
    encoder = _encoder()
    items = [_item(3), _item(4, missing_steps=(0,))]
    fp32 = embeddings.embed_items(encoder, items, patch_size=2, batch_size=2)
    bf16 = embeddings.embed_items(encoder, items, patch_size=2, batch_size=2, precision="bf16")
    assert bf16.pooled.dtype == torch.float32  # pooled in fp32 whatever the encoder ran in
    cosine = torch.nn.functional.cosine_similarity(bf16.pooled, fp32.pooled, dim=-1)
    assert cosine.min() > 0.999
    assert torch.equal(bf16.patch_counts, fp32.patch_counts)
    assert all(param.dtype == torch.float32 for param in encoder.parameters())
    with pytest.raises(ValueError, match="precision"):
        embeddings.embed_items(encoder, items, patch_size=2, precision="half")


def test_the_label_map_never_reaches_the_encoder() -> None:
    encoder = _encoder()
    item = _item(2)
    changed = _item(2)
    changed.data["worldcover"] = changed.data["worldcover"] + 50.0
    first = embeddings.embed_items(encoder, [item], patch_size=2)
    second = embeddings.embed_items(encoder, [changed], patch_size=2)
    assert torch.equal(first.pooled, second.pooled)


def test_decode_only_maps_are_refused_as_inputs() -> None:
    with pytest.raises(ValueError, match="decode-only"):
        embeddings.check_input_modalities(("sentinel2_l2a", "worldcover"))


def test_pooling_is_the_mean_of_the_visible_tokens_per_sample_and_per_patch() -> None:
    tokens = torch.arange(2 * 1 * 2 * 2 * 1 * 1, dtype=torch.float32).reshape(2, 1, 2, 2, 1, 1)
    masks = torch.full((2, 1, 2, 2, 1), MaskValue.ONLINE_ENCODER, dtype=torch.int8)
    masks[0, 0, 0, 1, 0] = MaskValue.MISSING  # sample 0, patch (0, 0), step 1
    masks[1, 0, 1] = MaskValue.MISSING  # sample 1, patch (0, 1), both steps
    pooled = embeddings.pool_encoder_output({"s2": tokens}, {"s2": masks}, ["s2"])
    # sample 0 tokens: (0, 0)->[0, 1], (0, 1)->[2, 3]; token 1 missing: mean of 0, 2, 3.
    assert pooled.pooled[:, 0].tolist() == pytest.approx([5 / 3, 4.5])
    assert pooled.patches[0, 0, :, 0].tolist() == pytest.approx([0.0, 2.5])
    assert pooled.patch_counts.tolist() == [[[1, 2]], [[2, 0]]]


def test_evaluation_restores_the_encoders_training_mode() -> None:
    encoder = _encoder().train()
    embeddings.embed_items(encoder, [_item(3)], patch_size=2)
    assert all(module.training for module in encoder.modules())

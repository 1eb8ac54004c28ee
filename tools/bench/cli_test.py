"""The benchmarks' command lines (absl flags): the documented ones parse to the documented
settings, and bad values are one line with exit 2 before anything is measured."""

from __future__ import annotations

import pytest

from tools.bench import data, embed, loader_vs_step, train_step


def test_train_step_quick_mode_and_patch_list() -> None:
    args = train_step.resolve_defaults(train_step.COMMAND.parse(["--size", "nano"]))
    assert (args.batch_size, args.repeats, args.patch_sizes) == (2, 5, [1, 2, 4, 8])
    args = train_step.resolve_defaults(
        train_step.COMMAND.parse(["--patch=2,4", "--device=cuda", "--dtype", "bf16"])
    )
    assert (args.size, args.batch_size, args.repeats) == ("base_shallow_decoder", 1, 3)
    assert (args.patch_sizes, args.device, args.dtype) == ([2, 4], "cuda", "bf16")


def test_the_reference_is_skipped_with_the_documented_spelling() -> None:
    for tool in (train_step, embed, data):
        assert tool.COMMAND.parse(["--no-reference"]).no_reference is True
        assert tool.COMMAND.parse([]).no_reference is False


def test_embed_and_data_defaults() -> None:
    args = embed.COMMAND.parse(["--size", "base"])
    assert (args.size, args.patch, args.batch_size, args.repeats, args.threads) == (
        "base",
        4,
        2,
        3,
        None,
    )
    args = data.COMMAND.parse(["--h5-dir", "/tmp/h5", "--batches", "16", "--batch-size", "8"])
    assert (args.h5_dir, args.batches, args.batch_size, args.seed) == ("/tmp/h5", 16, 8, 0)


def test_loader_vs_step_worker_counts() -> None:
    args = loader_vs_step.COMMAND.parse(["--workers", "0,2", "--size", "nano"])
    assert loader_vs_step.worker_counts(args.workers) == [0, 2]


@pytest.mark.parametrize(
    ("tool", "argv", "fragment"),
    [
        (train_step, ["--patch", "1,9"], "train_step: --patch values must be in 1..8, got 1,9"),
        (train_step, ["--size", "huge"], "train_step: --size: invalid value 'huge'"),
        (train_step, ["--accelerator", "B300"], "train_step: --accelerator: unknown accelerator"),
        (embed, ["--device", "tpu"], "embed: --device: invalid value 'tpu'"),
        (embed, ["--repeats", "0"], "embed: --repeats: invalid int value '0'"),
        (data, ["--batches", "x"], "data: --batches: invalid int value 'x'"),
        (loader_vs_step, ["--workers", "two"], "loader_vs_step: --workers takes comma-separated"),
        (loader_vs_step, ["stray"], "loader_vs_step: unexpected argument 'stray'"),
    ],
    ids=["patch", "size", "accelerator", "device", "repeats", "batches", "workers", "positional"],
)
def test_bad_values_are_one_line_and_exit_2(tool, argv, fragment, capsys) -> None:
    assert tool.main(argv) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(fragment), line
    assert captured.out == ""

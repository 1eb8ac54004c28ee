"""The make_synthetic command line: flags, output layout and progress line."""

import numpy as np
import pytest

from models.data import h5_format, make_synthetic


def test_cli_writes_the_requested_dataset_and_reports_progress(tmp_path, capsys):
    argv = [
        "--out",
        str(tmp_path),
        "--samples",
        "2",
        "--seed",
        "3",
        "--size",
        "16",
        "--timesteps",
        "5",
    ]
    assert make_synthetic.main(argv) == 0
    out, err = capsys.readouterr()
    h5_dir = tmp_path / out.strip().splitlines()[-1]
    assert h5_dir.name == "2" and h5_dir.parent.parent.name.endswith("gzip_4_shuffle_16_x_1")
    assert "wrote 2/2 samples" in err
    record = h5_format.read_sample(h5_format.sample_path(h5_dir, 1))
    assert record.modalities["worldcover"].shape == (16, 16, 1, 1)
    assert record.timestamps.shape == (5, 3)
    assert len(h5_format.read_metadata(h5_dir)) == 2


def test_uncompressed_output_and_seed_change_the_files(tmp_path, capsys):
    make_synthetic.main(
        [
            "--out",
            str(tmp_path / "a"),
            "--samples",
            "1",
            "--seed",
            "1",
            "--size",
            "8",
            "--compression",
            "none",
        ]
    )
    make_synthetic.main(
        [
            "--out",
            str(tmp_path / "b"),
            "--samples",
            "1",
            "--seed",
            "2",
            "--size",
            "8",
            "--compression",
            "none",
        ]
    )
    first, second = capsys.readouterr().out.strip().splitlines()
    assert "h5py_data_w_missing_timesteps_8_x_1" in first
    labels = [
        h5_format.read_sample(f"{d}/sample_0.h5").modalities["worldcover"] for d in (first, second)
    ]
    assert not np.array_equal(*labels)


def test_missing_required_flag_exits_with_usage(capsys):
    with pytest.raises(SystemExit):
        make_synthetic.main(["--samples", "2"])
    assert "--out" in capsys.readouterr().err

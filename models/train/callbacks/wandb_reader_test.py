"""Reading offline W&B runs written by the installed wandb package, without a server."""

from pathlib import Path

import pytest

from models.train.callbacks import wandb_reader

wandb = pytest.importorskip("wandb")


@pytest.fixture
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


def _write_run(folder: Path, big_value: str = "") -> Path:
    run = wandb.init(
        project="proj",
        name="tiny-run",
        id="abcdef123456",
        mode="offline",
        dir=str(folder),
        config={"model": {"width": 8}, "lr": 0.1, "note": big_value},
    )
    for step in range(1, 4):
        run.log({"train/loss": 4.0 / step}, step=step)
    run.log({"train/eval/landcover/knn_accuracy": 0.5}, step=3)
    run.finish()
    (log,) = wandb_reader.offline_run_files(folder)
    assert wandb_reader.read_finished_run(log).finished  # the writer flushed its "exit"
    return log


def test_a_log_cut_before_its_exit_record_reads_as_unfinished(offline_env: Path) -> None:
    log = _write_run(offline_env)
    whole = wandb_reader.read_run(log)
    assert whole.finished
    cut = offline_env / "cut.wandb"
    cut.write_bytes(log.read_bytes()[: log.stat().st_size - 40])  # a writer mid-flush
    partial = wandb_reader.read_finished_run(cut, timeout_s=0)
    assert not partial.finished
    assert partial.run_id == whole.run_id  # the whole records before the cut are kept


def test_history_config_and_identity_come_back_from_the_log(offline_env: Path) -> None:
    # A 40 kB config value spans two 32 kB blocks: FIRST/LAST records must be joined.
    big = "x" * 40_000
    parsed = wandb_reader.read_run(_write_run(offline_env, big))
    assert (parsed.run_id, parsed.project, parsed.name) == ("abcdef123456", "proj", "tiny-run")
    assert parsed.config["model"] == {"width": 8} and parsed.config["lr"] == 0.1
    assert parsed.config["note"] == big
    losses = [(row["_step"], row["train/loss"]) for row in parsed.history if "train/loss" in row]
    assert losses == [(1, 4.0), (2, 2.0), (3, 4.0 / 3)]
    assert any(row.get("train/eval/landcover/knn_accuracy") == 0.5 for row in parsed.history)


def test_a_torn_tail_keeps_the_whole_records_before_it(offline_env: Path) -> None:
    data = _write_run(offline_env).read_bytes()  # one snapshot: W&B may still append
    complete, torn = offline_env / "complete.wandb", offline_env / "torn.wandb"
    complete.write_bytes(data)
    torn.write_bytes(data[:-5])
    whole = wandb_reader.read_payloads(complete)
    assert len(whole) > 3
    assert wandb_reader.read_payloads(torn) == whole[:-1]


def test_a_file_that_is_not_a_wandb_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b"not a log at all")
    with pytest.raises(wandb_reader.WandbFormatError, match="not a W&B log"):
        wandb_reader.read_payloads(path)


def test_offline_run_files_list_attempts_oldest_first_even_within_one_second(
    tmp_path: Path,
) -> None:
    # W&B names a resumed attempt that starts in the same second as the last one `<id>-1`,
    # `<id>-2`, ...; a later second sorts by its timestamp.
    names = [
        "offline-run-20261203_182258-abc",
        "offline-run-20261203_182258-abc-1",
        "offline-run-20261203_182258-abc-2",
        "offline-run-20261203_182259-abc",
        "offline-run-20261203_182259-abc-10",
    ]
    for name in reversed(names):
        (tmp_path / "wandb" / name).mkdir(parents=True)
        (tmp_path / "wandb" / name / "run-abc.wandb").write_bytes(b"")
    found = wandb_reader.offline_run_files(tmp_path)
    assert [log.parent.name for log in found] == names

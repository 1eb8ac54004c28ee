"""Tests for the stderr progress line: content, TTY throttling, one line per log step."""

import io
import types

from models.train.callbacks import progress


def _callback(is_tty: bool, clock, log_interval: int = 2, max_steps: int = 6):
    stream = io.StringIO()
    callback = progress.ProgressCallback(
        progress.ProgressConfig(min_interval_s=10.0), stream=stream, is_tty=is_tty, clock=clock
    )
    callback.attach(
        types.SimpleNamespace(
            is_main=True,
            max_steps=max_steps,
            is_log_step=lambda step: step % log_interval == 0 or step == max_steps,
        )
    )
    return callback, stream


def _metrics(loss: float) -> dict:
    return {"loss": loss, "samples": 8.0, "tokens": 400.0, "step_time_s": 0.5, "lr": 1e-4}


def test_a_log_file_gets_one_clean_line_per_log_step_with_rates() -> None:
    now = [0.0]
    callback, stream = _callback(is_tty=False, clock=lambda: now[0])
    for step in range(1, 7):
        now[0] += 0.5
        callback.post_step(step, _metrics(loss=10.0 - step))
    callback.post_train()
    lines = stream.getvalue().splitlines()
    assert [line.split(" |")[0] for line in lines] == [
        "step 2/6 (33%)",
        "step 4/6 (67%)",
        "step 6/6 (100%)",
    ]
    assert "\r" not in stream.getvalue()
    # Two steps of 8 samples / 400 tokens in 2 x 0.5 s since the previous line.
    assert "loss 6.0000 | 16.0 samples/s | 800.0 tokens/s | lr 1.00e-04" in lines[1]
    assert lines[2].endswith("eta 0:00:00")


def test_a_terminal_is_redrawn_in_place_at_most_once_per_interval() -> None:
    now = [0.0]
    callback, stream = _callback(is_tty=True, clock=lambda: now[0], log_interval=1)
    for step in range(1, 7):
        now[0] += 4.0  # a redraw is due every 10 s: steps 1, 4 and (last) 6
        callback.post_step(step, _metrics(loss=float(step)))
    callback.post_train()
    text = stream.getvalue()
    draws = [chunk for chunk in text.split("\r\033[K") if chunk]
    assert [draw.split(" |")[0] for draw in draws] == [
        "step 1/6 (17%)",
        "step 4/6 (67%)",
        "step 6/6 (100%)",
    ]
    assert text.endswith("\n") and text.count("\n") == 1

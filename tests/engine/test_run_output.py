"""What a run shows and writes about itself: progress lines within 120 columns at a period
scaled to the run, and a metrics.json that a resume continues without repeating."""

import json

import pytest

from detectron2.utils.events import EventStorage

from gcnet.engine.writers import LINE_WIDTH, ProgressPrinter, progress_period, trim_metrics

PREFIX = "[12/02 07:49:22 gcnet]: "
CASCADE_LOSSES = [f"loss_{k}_stage{s}" for s in range(3) for k in ("cls", "box_reg")] + [
    "loss_mask",
    "loss_rpn_cls",
    "loss_rpn_loc",
]


@pytest.mark.parametrize("max_iter, log_period, expected", [(200, 20, 10), (90000, 20, 20), (30, 20, 1), (5, 20, 1)])
def test_progress_period_scales_with_the_run(max_iter, log_period, expected):
    assert progress_period(max_iter, log_period) == expected


def test_progress_lines_fit_and_come_every_period(caplog):
    printer = ProgressPrinter(max_iter=90000, period=20)
    with EventStorage(start_iter=0) as storage:
        for iteration in range(40):
            storage.iter = iteration
            storage.put_scalars(total_loss=12.345678, **{name: 1.23456 for name in CASCADE_LOSSES}, lr=0.02)
            storage.put_scalar("time", 2.5)
            with caplog.at_level("INFO", logger="gcnet"):
                printer.write()
    lines = [r.getMessage() for r in caplog.records if r.name == "gcnet"]
    assert [line.split()[1] for line in lines] == ["20/90000", "40/90000"]
    assert all(len(PREFIX + line) <= LINE_WIDTH for message in lines for line in message.splitlines()), lines
    assert (
        lines[-1].startswith("iter 40/90000  loss 12.3 (cls_stage0 1.2")
        and " lr 0.02  2.5 s/it  eta 2 days" in lines[-1]
    )
    # Every loss is shown: those that do not fit follow on the message's next lines.
    shown = lines[-1].replace("(", " ").split()
    assert all(name[len("loss_") :] in shown for name in CASCADE_LOSSES), lines[-1]
    assert lines[-1].splitlines()[1].startswith("  + ")


def test_progress_line_at_least_every_30_seconds(caplog, monkeypatch):
    clock = iter(range(0, 1000, 16))  # 16 s per iteration
    monkeypatch.setattr("gcnet.engine.writers.time.monotonic", lambda: next(clock))
    printer = ProgressPrinter(max_iter=1000, period=50)
    with EventStorage(start_iter=0) as storage, caplog.at_level("INFO", logger="gcnet"):
        for iteration in range(6):
            storage.iter = iteration
            storage.put_scalars(total_loss=1.0)
            printer.write()
    assert [r.getMessage().split()[1] for r in caplog.records] == ["2/1000", "4/1000", "6/1000"]


def test_trim_metrics_keeps_the_iterations_before_the_resume_point(tmp_path):
    entries = [{"iteration": i, "total_loss": 1.0} for i in range(10)]
    text = "".join(json.dumps(e) + "\n" for e in entries) + '{"iteration": 10, "tot'  # cut by a kill
    (tmp_path / "metrics.json").write_text(text)
    assert trim_metrics(str(tmp_path), 4) == 6
    assert [json.loads(line)["iteration"] for line in (tmp_path / "metrics.json").read_text().splitlines()] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert trim_metrics(str(tmp_path), 4) == 0
    assert trim_metrics(str(tmp_path / "none"), 4) == 0

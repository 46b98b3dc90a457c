"""The paper's COCO schedules (Section 5.1, Table 6(b)) at 16 images per batch: "1x" is
90k iterations with the learning rate divided by 10 at 60k and 80k (about epochs 8 and 11 of
12); "2x" is 180k iterations with steps at 120k and 160k. Linear warm-up over 500 iterations
from 1/3 of the learning rate, as the reference implementation.

Milestones are relative to the schedule's length, so overriding ``train.max_iter`` scales
the whole schedule.
"""

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler


def multistep_schedule(max_iter, steps, warmup_iters=500, warmup_factor=1.0 / 3):
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[*steps, max_iter]),
        warmup_length=warmup_iters / max_iter,
        warmup_method="linear",
        warmup_factor=warmup_factor,
    )


lr_multiplier_1x = multistep_schedule(90000, (60000, 80000))
lr_multiplier_2x = multistep_schedule(180000, (120000, 160000))

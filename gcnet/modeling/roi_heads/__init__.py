from .cascade import SCORE_FUSIONS, MultiMaskCascadeROIHeads

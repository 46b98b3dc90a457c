from .cascade import MultiMaskCascadeROIHeads

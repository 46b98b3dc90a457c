"""Looking into GCNet models: the GC blocks' attention maps, heatmap overlays, and the
parameter/FLOPs/activation counts of the paper's tables."""

from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .complexity import Complexity, comparison_table, measure_complexity, paper_input_size  # noqa: E402
from .context_attention import (  # noqa: E402
    AttentionSummary,
    ContextAttentionRecorder,
    default_context_blocks,
    find_context_blocks,
    predict_with_attention,
    short_block_name,
    summarize_attention,
)
from .heatmap import (  # noqa: E402
    COLOUR_BAR_TITLE,
    crop_to_image,
    draw_attention_map,
    overlay_heatmap,
    padded_input_size,
)
from .hooks import ForwardHooks  # noqa: E402

"""What the tools run, to use from Python too: the demo on images and videos
(:func:`run_demo`, :class:`Demo`), export with its check against the eager model
(:func:`export_and_check`), and the model they run, by zoo name or config file
(:func:`model_config`). The web demo is :mod:`gcnet.apps.web_demo` (it needs gradio, the
``demo`` extra).

It sits above :mod:`gcnet.model_zoo`: a demo takes a zoo name as readily as a config.
"""

from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .demo import MAX_DRAWN_PIXELS, Demo, describe_predictions, drawing_size, run_demo  # noqa: E402
from .export_check import export_and_check  # noqa: E402
from .model_config import model_config, model_title  # noqa: E402
from .outputs import check_writable_folder, plan_image_outputs, plan_video_output  # noqa: E402

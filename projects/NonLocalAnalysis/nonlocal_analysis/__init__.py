"""Section 3 of the paper: what a non-local block learns, measured by the average cosine
distance between positions of its input, embeddings, attention maps and output."""

from .cosine import average_cosine_distance
from .run import analyze_images, image_paths, query_points, statistics_table, summarize, write_report
from .statistics import STATISTICS, NonLocalStatistics
from .visualize import query_attention_figure

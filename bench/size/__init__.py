"""Hardware sizing: predict peak VRAM from configs and GGUF headers, check it, recommend.

The library API: `predict(pipeline_components, Scenario(...))` returns a `Prediction` whose
named `Term`s sum to the predicted peak; `check_run(run_dir)` compares predictions with a run's
measurements; `size_options(model=..., vram=...)` ranks what fits a given amount of memory
(`recommend(...)` underneath). The `bench size` command is bench/cli/size.py. Formulas:
docs/size.md.
"""

from bench.size.options import SizeOptions, size_options

__all__ = ["SizeOptions", "size_options"]

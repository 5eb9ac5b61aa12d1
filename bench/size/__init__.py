"""Hardware sizing: predict peak VRAM from configs and GGUF headers, check it, recommend.

`size_command` is the `bench size` command (registered by bench/cli.py). The library API:
`predict(pipeline_components, Scenario(...))` returns a `Prediction` whose named `Term`s sum to
the predicted peak; `check_run(run_dir)` compares predictions with a run's measurements;
`recommend(...)` ranks what fits a given amount of memory. Formulas: docs/size.md.
"""

from bench.size.command import size_command

__all__ = ["size_command"]

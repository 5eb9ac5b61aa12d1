"""Hardware sizing: predict peak VRAM from configs and GGUF headers, check it, recommend.

The library API: `predict(pipeline_components, Scenario(...))` (bench.sizing.predict) returns a
`Prediction` whose named `Term`s sum to the predicted peak; `check_run(run_dir)`
(bench.sizing.check) compares predictions with a run's measurements; `size_options(model=...,
vram=...)` (bench.sizing.options) ranks what fits a given amount of memory (`recommend(...)`
underneath). The `bench size` command is bench/cli/size.py. Formulas: docs/size.md.

The package imports none of its modules: bench.sizing.components, .terms and .units are engines
the model families build on (docs/architecture.md), which must not load the stages above them.
"""

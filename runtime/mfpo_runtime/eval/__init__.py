"""Hallucination evaluation: generation with any stage's policy, CHAIR / Object HalBench, AMBER,
POPE, the synthetic benchmark with the image-reliance diagnostic, and the run's report.

The eval stage (mfpo_runtime.stages.evaluate) drives it; `benchmarks.BENCHMARKS` maps the API's
benchmark names to their modules.
"""

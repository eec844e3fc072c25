"""One module per stage kind, each with `run(ctx: StageContext) -> StageOutcome` (see mfpo_runtime.stage)."""

"""One module per stage kind, each with `run(ctx: StageContext) -> StageOutcome` (see mfpo_runtime.stage)."""


def plain(value):
    """An API value as plain Python for the typed configs below the stages: an enum member as
    its value (a plain string stays: a spec edited in place is not re-validated), a list as a
    tuple."""
    if isinstance(value, list):
        return tuple(plain(item) for item in value)
    return getattr(value, "value", value)

"""What both planes share and neither owns: the MFPORun types, the table of stage kinds, the
stage contract and storage layout, storage itself and the CPU count.

Imports pydantic and the minio client only: no torch, no kopf, neither `mfpo_operator` nor
`mfpo_runtime` (an import-linter contract holds this).
"""

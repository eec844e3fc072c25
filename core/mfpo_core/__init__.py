"""What both planes share and neither owns: the MFPORun types, the stage contract and storage.

Imports pydantic and the minio client only: no torch, no kopf, neither `mfpo_operator` nor
`mfpo_runtime` (an import-linter contract holds this).
"""

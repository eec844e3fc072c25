"""The MFPO control plane: the MFPORun API, the pure planner, the kopf operator and the local runner.

No torch here: the operator image does not have it.
"""

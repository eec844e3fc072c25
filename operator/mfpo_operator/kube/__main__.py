"""`python -m mfpo_operator.kube`: the same as the `mfpo-operator` console script."""

from mfpo_operator.kube.main import main

main()

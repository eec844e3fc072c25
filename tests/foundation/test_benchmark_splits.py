"""Benchmark splits are named as each benchmark's data names them, once each, refused at apply.

References: the synthetic world's writer (`mfpo_runtime.data.scenes.SPLITS`, the directories it
writes), POPE's files (coco_pope_random.json, coco_pope_popular.json, coco_pope_adversarial.json
in its repository's output/coco/), and the API server's rule for a list of
`x-kubernetes-list-type: set` (apiextensions-apiserver's listtype validation: "Duplicate value").
Before: a misspelled split was dropped without a word, and a duplicate or a path was taken.
"""

from __future__ import annotations

import pytest
from mfpo_core import api
from mfpo_operator import crd, validation
from mfpo_runtime.data import scenes
from mfpo_runtime.eval import pope
from pydantic import ValidationError


def manifest(entry: dict) -> dict:
    spec = {"model": {"uri": "file:///m"}, "data": {"uri": "file:///d", "format": "synthetic"},
            "storage": {"uri": "file:///runs"}, "evaluation": {"benchmarks": [entry]}}  # fmt: skip
    return {"apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": "r"}, "spec": spec}


def problems(entry: dict) -> list[str]:
    with pytest.raises(validation.ManifestError) as caught:
        validation.validate_manifest(manifest(entry))
    with pytest.raises(ValidationError):
        api.BenchmarkSpec.model_validate(entry)
    return caught.value.problems


def test_the_split_names_are_the_datas_own() -> None:
    assert sorted(s.value for s in api.SyntheticSplit) == sorted(scenes.SPLITS)
    assert [s.value for s in api.PopeSplit] == list(pope.SPLITS) == ["random", "popular", "adversarial"]
    for options in ("synthetic", "pope"):
        node = crd.resource_schema()["properties"]["spec"]["properties"]["evaluation"]["properties"]["benchmarks"]
        splits = node["items"]["properties"][options]["properties"]["splits"]
        assert splits["x-kubernetes-list-type"] == "set" and splits["maxItems"] == len(splits["items"]["enum"])
        # synthetic: unset means the world's eval splits, or the one split its uri's dataset is.
        assert splits.get("default") == (None if options == "synthetic" else ["random", "popular", "adversarial"])


@pytest.mark.parametrize(
    "split", ["counterprior", "eval-counter-prior", "../../other-team/world/eval", "eval/../train", ""]
)
def test_a_split_the_synthetic_world_does_not_have_is_refused(split: str) -> None:
    found = problems({"name": "synthetic", "synthetic": {"splits": ["eval", split]}})
    assert found == [
        (f'spec.evaluation.benchmarks[0].synthetic.splits[1]: Unsupported value: "{split}": supported values: '
         '"eval", "eval-counterprior", "train"')
    ]


@pytest.mark.parametrize(
    ("entry", "line"),
    [({"name": "synthetic", "synthetic": {"splits": ["eval", "eval"]}}, 'synthetic.splits[1]: Duplicate value: "eval"'),
     ({"name": "pope", "uri": "file:///p", "pope": {"splits": ["random", "adversarial", "random"]}},
      'pope.splits[2]: Duplicate value: "random"')],
)  # fmt: skip
def test_a_split_listed_twice_is_refused_as_the_api_server_refuses_a_duplicate_in_a_set(entry: dict, line: str) -> None:
    assert problems(entry) == [f"spec.evaluation.benchmarks[0].{line}"]
    with pytest.raises(ValidationError, match="is listed twice: list each split once"):
        api.BenchmarkSpec.model_validate(entry)

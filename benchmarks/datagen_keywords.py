"""The datagen stage's keywords on the synthetic world, per record, and their diff between two trees.

    python -m mfpo_runtime.data.scenes --out file://$WORLD          # the quickstart's world
    PYTHONPATH=<tree>/core:<tree>/operator:<tree>/runtime \\
        python benchmarks/datagen_keywords.py run --world $WORLD --work $DIR --out keywords.json
    python benchmarks/datagen_keywords.py diff before.json after.json

`run` runs the datagen stage (both shards) with the quickstart's imagePreference
(examples/quickstart.yaml: top 3, annotation grounding, t = 500, 2 shards) on the world's train
split, with whatever code PYTHONPATH names, and writes {record id: keywords, objects, chosen
answer, grounded keywords, regions, perturbed image's MD5}. `diff` says which records changed:
the keywords' order only, non-object keywords dropped, other objects grounded, and how many
perturbed images differ (the only change training sees).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
from pathlib import Path

import yaml

QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart.yaml"


def run(world: Path, work: Path, out: Path) -> None:
    from mfpo_core import storage
    from mfpo_core.api import MFPORun
    from mfpo_core.contract import StageConfig
    from mfpo_runtime.data.records import read_records
    from mfpo_runtime.stage import run_stage
    from mfpo_runtime.stages.datagen import dataset_uri

    manifest = yaml.safe_load(QUICKSTART.read_text())
    spec = manifest["spec"]
    spec["data"]["uri"] = f"file://{world}/train"
    # Datagen with annotations reads no model, but checks that model.uri exists (stages.inputs).
    (work / "unread-model").mkdir(parents=True, exist_ok=True)
    spec["model"]["uri"] = f"file://{work}/unread-model"
    spec["storage"]["uri"] = f"file://{work}/artifacts"
    spec["evaluation"]["benchmarks"][0]["uri"] = f"file://{world}"
    run_spec = MFPORun.model_validate(manifest).spec
    shards = run_spec.image_preference.shards
    records = {}
    for index in range(shards):
        config = StageConfig(
            uid="uid-test",
            runner="operator",
            run="quickstart", stage="datagen", run_uri=f"file://{work}/runs/quickstart",
            spec=run_spec, shard_index=index,
        )  # fmt: skip
        print(f"shard {index}: {run_stage(config, progress=False).metrics}")
        root = storage.local_path(dataset_uri(config.run_uri, (index, shards)))
        for record in read_records(root):
            records[record.id] = {
                "keywords": record.keywords,
                "objects": record.objects,
                "chosen": record.chosen,
                "grounded": record.extra.get("grounded"),
                "regions": record.regions,
                "perturbed_md5": hashlib.md5(
                    (root / record.perturbed_image).read_bytes()
                ).hexdigest(),
            }
    out.write_text(json.dumps(records, indent=0, sort_keys=True))
    print(f"{len(records)} records -> {out}")


def diff(before_path: Path, after_path: Path) -> None:
    before, after = json.loads(before_path.read_text()), json.loads(after_path.read_text())
    if before.keys() != after.keys():
        raise SystemExit("the two runs hold different records: not the same world?")
    kinds: collections.Counter = collections.Counter()
    for rid, old in before.items():
        new = after[rid]
        if old["keywords"] == new["keywords"]:
            continue
        objects = set(old["objects"])
        if set(old["keywords"]) == set(new["keywords"]):
            kinds["same keywords, another order"] += 1
        elif set(new["keywords"]) == set(old["keywords"]) & objects:
            kinds["non-object keywords dropped, the same objects"] += 1
        else:
            lost = sorted(set(old["keywords"]) - set(new["keywords"]))
            kinds[f"{lost} replaced by another object"] += 1
    grounded = sum(set(before[r]["grounded"]) != set(after[r]["grounded"]) for r in before)
    images = sum(before[r]["perturbed_md5"] != after[r]["perturbed_md5"] for r in before)
    non_objects = {
        name: sum(not set(run[r]["keywords"]) <= set(run[r]["objects"]) for r in run)
        for name, run in (("before", before), ("after", after))
    }
    print(f"{len(before)} records; keywords changed in {sum(kinds.values())}:")
    for kind, count in kinds.most_common():
        print(f"  {count:5d}  {kind}")
    print(
        f"records with a non-object keyword: before {non_objects['before']}, after {non_objects['after']}"
    )
    print(
        f"records whose grounded objects changed: {grounded}; perturbed images that differ: {images}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_args = sub.add_parser("run")
    run_args.add_argument("--world", type=Path, required=True, help="the world's root folder")
    run_args.add_argument("--work", type=Path, required=True, help="a scratch folder")
    run_args.add_argument("--out", type=Path, required=True)
    diff_args = sub.add_parser("diff")
    diff_args.add_argument("before", type=Path)
    diff_args.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.world.resolve(), args.work.resolve(), args.out)
    else:
        diff(args.before, args.after)


if __name__ == "__main__":
    main()

"""Print the requirements of the mfpo distribution for the given extras, one a line, from
pyproject.toml alone: the images install them in a layer of their own before the source is
copied, so that a source change rebuilds only the last layer.

    python3 images/requirements.py pyproject.toml operator
    python3 images/requirements.py pyproject.toml runtime --exclude torch deepspeed
"""

import argparse
import re
import tomllib

parser = argparse.ArgumentParser()
parser.add_argument("pyproject")
parser.add_argument("extras", nargs="*")
parser.add_argument("--exclude", nargs="*", default=[], help="distributions installed apart")
args = parser.parse_args()

with open(args.pyproject, "rb") as handle:
    project = tomllib.load(handle)["project"]
requirements = list(project["dependencies"])
for extra in args.extras:
    requirements += project["optional-dependencies"][extra]
for requirement in requirements:
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()
    if name not in args.exclude and name != project["name"]:
        print(requirement)

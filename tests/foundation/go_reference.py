"""Cases answered by the Go code kubectl and the kubelet run, and their recorder.

`go_reference/main.go`, built in a Kubernetes v1.32 source tree (its docstring says how), answers
three kinds of cases with Kubernetes' own vendored code:

- YAML_CASES: files as kubectl's reader turns them into the JSON it sends (apimachinery util/yaml
  and sigs.k8s.io/yaml over its fork of go-yaml v2): merge keys in every order, anchors, aliases,
  tags, document separators, odd keys and numbers, and a seeded corpus of random documents;
- QUANTITY_CASES: resource.ParseQuantity's exact value (or its error);
- IMAGE_CASES: distribution/reference's ParseNormalizedNamed, as the kubelet parses an image.

    python tests/foundation/go_reference.py PATH/TO/go-reference   records go_reference_answers.json

Used by tests/local/test_kubectl_yaml.py, tests/foundation/test_byte_quantities.py and
tests/foundation/test_kubernetes_rules.py. Random cases come from fixed seeds, so the recorded
file and the cases always match (a test says so).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

ANSWERS = Path(__file__).with_name("go_reference_answers.json")

# ----------------------------------------------------------------------------- YAML

YAML_HAND_WRITTEN = [
    # merge keys: after and before an explicit key, lists of merges, nested merges, aliases
    "t: {epochs: 3, <<: {epochs: 7}}",
    "t: {<<: {epochs: 7}, epochs: 3}",
    "t: {<<: [{epochs: 2}, {epochs: 5}]}",
    "t: {<<: [{a: 2, b: 4}, {a: 5, c: 9}], c: 1}",
    "t: {c: 1, <<: [{a: 2, b: 4}, {a: 5, c: 9}]}",
    "t: {<<: [{a: 2}, {<<: {s: 4}, a: 5}]}",
    "t: {<<: {a: 7}, <<: {b: 5}}",
    "t: {<<: {a: 7}, <<: {a: 5}}",
    "t: {a: 1, <<: {a: 2}, a: 3}",
    "b: &b {a: 1}\nt: {<<: *b, a: 2}",
    "b: &b {a: 1}\nt: {a: 2, <<: *b}",
    "b: &b {a: 1}\nt: {<<: [*b, {a: 2}]}",
    "b: &b {a: 1, <<: {c: 3}}\nt: {<<: *b}",
    "training: &base\n  epochs: 1\n  seed: 4\nother:\n  <<: *base\n  epochs: 2\n",
    # merge values go-yaml refuses, and what is not a merge key
    "t: {<<: 3}",
    "t: {<<: [3]}",
    "t: {<<: ~}",
    "t: {<<: }",
    "s: &s [{a: 1}]\nt: {<<: *s}",
    "b: &b 3\nt: {<<: [*b]}",
    "t: {<<: [{a: 1}, [2]]}",
    't: {"<<": {a: 7}}',
    "t: {!!merge \"<<\": {a: 7}}",
    "t: {! <<: {a: 1}}",
    "t: <<",
    # anchors and aliases
    "a: &a [*a]",
    "a: &a {b: *a}",
    "a: *nope",
    "a: &x 1\nb: &x 2\nc: *x",
    "a: &k [1]\n*k : 2",
    # tags
    "rack: !!binary YWJj",
    "a: !!binary /w==",
    "a: !!binary 4oI=",
    "a: !!binary 7aCA",
    "a: !!binary |\n  YW\n  Jj\n",
    "a: !!binary YW Jj",
    "a: !!binary YR==",
    "a: !!binary YQ==YQ==",
    'a: !!binary ""',
    "k: !foo bar",
    "k: !foo {a: 1}",
    "k: ! 3",
    "k: ! ~",
    "k: !!str 3",
    'k: !!int "3"',
    'k: !!int "abc"',
    "k: !!int 1.5",
    "k: !!float 1",
    'k: !!float "x"',
    'k: !!bool "yes"',
    "k: !!bool ~",
    "k: !!null ~",
    "k: !!null foo",
    'k: !!null ""',
    "k: !!int",
    "k: !!str",
    "k: !foo",
    "k: !!timestamp 2024-01-02",
    "k: !!timestamp abc",
    "k: !!timestamp 2024-13-02",
    "k: !!timestamp 2024-02-30",
    "k: !!timestamp 2024-1-2 3:4:5",
    "k: 2024-01-02",
    "k: 2024-01-02T10:00:00Z",
    "k: !!map [1]",
    "k: !!seq {a: 1}",
    "k: !!str {a: 1}",
    # documents, as kubectl's reader cuts them
    "--- {a: 1}",
    "---\na: 1\n---\n---\nb: 2\n",
    "a: 1\n...\nb: 2",
    "---  # c\na: 1",
    "----\na: 1",
    "a: 1\n --- \nb: 2",
    "---\n",
    "",
    "# only\n",
    "null",
    "~",
    "---\n~\n---\na: 1",
    "a: 1\r\nb: 2\r\n",
    "%YAML 1.1\n---\na: 1\n",
    # keys
    "1.5: x",
    "1e6: x",
    "100000: x",
    "0.0001: x",
    "0.00001: x",
    "-0.0: x",
    ".inf: x",
    "-.inf: x",
    ".nan: x",
    "3.4e39: x",
    "123456789.0: x",
    "0.1: x",
    "1.0: x",
    "~: 1",
    "18446744073709551615: x",
    "9223372036854775807: x",
    "true: 1",
    "yes: 1\ntrue: 2",
    "? [1]\n: x",
    "? {a: 1}\n: x",
    # JSON files (the first character '{')
    '{"a": 1, "a": 2}',
    '{"a": 1.0}',
    '{"a": 1e3}',
    "{a: 1}",
    '  {"a": NaN}',
    '{"a": 1} {"b": 2}',
    '{"a": 1}\n[1]',
    '{"a": 18446744073709551615}',
    '{"a": 9223372036854775808}',
    # scalars
    'a: "\\x00"',
    "a: .5",
    "a: +.5",
    "a: ._5",
    "a: .1e400",
    "a: 1e400",
    "a: +18446744073709551615",
    "a: -9223372036854775808",
    "a: -9223372036854775809",
    "a: 0b11",
    "a: -0b11",
    "a: 0o17",
    "a: 0x_1F",
    "a: 1__0",
    "a: 08",
    "a: 0.",
    "a: 1e+3",
    "a: 1.2.3",
    "a: yES",
    "a: oN",
    "a: .nAn",
    "a: .inf",
    "a: 0x8000000000000000",
    "a: 1152921504606846976.0",
    "a: [1, 2",
    "a: b: c",
    "\ta: 1",
    "- a\nb: 1",
    "[1]",
    "a",
    '"a"',
    "3",
]

_SCALARS = [
    "1", "0x1F", "010", "1e3", "1.5", ".5", "yes", "No", "on", "~", "null", "", '"q"', "'s'", "2e-4",
    "1_000", "-0b11", "18446744073709551615", "9223372036854775808", "2024-01-02", "!!str 7",
    '!!int "7"', "!foo x", "!!binary YWJj", "!!float 3", "<<", '"<<"', "a b", "+1", "-.5", "0o7",
    "08", "1.", "true", "y", "n",
]  # fmt: skip
# No two keys that are different YAML values but one JSON string ("1" and 1): which value
# kubectl sends then depends on Go's map order, so no answer can be recorded for them.
_KEYS = ["a", "b", "c", "1", '"q"', "true", "yes", "1.5", "2", "0x2", "on", '"a"']


def _random_yaml(rng: random.Random) -> str:
    anchors: list[str] = []

    def flow(depth: int) -> str:
        r = rng.random()
        if depth > 3 or r < 0.35:
            return "*" + rng.choice(anchors) if anchors and rng.random() < 0.2 else rng.choice(_SCALARS)
        anchor = ""
        if rng.random() < 0.25:
            anchors.append(f"x{len(anchors)}")
            anchor = f"&{anchors[-1]} "
        if r < 0.55:
            return anchor + "[" + ", ".join(flow(depth + 1) for _ in range(rng.randint(0, 3))) + "]"
        items = []
        for _ in range(rng.randint(0, 4)):
            if rng.random() < 0.25:
                value = rng.choice([flow(depth + 1), "[" + ", ".join(flow(depth + 1) for _ in range(rng.randint(0, 2))) + "]"])
                if anchors and rng.random() < 0.4:
                    value = "*" + rng.choice(anchors)
                items.append("<<: " + value)
            else:
                items.append(rng.choice(_KEYS) + ": " + flow(depth + 1))
        return anchor + "{" + ", ".join(items) + "}"

    return "\n".join(f"{key}: {flow(0)}" for key in ["a", "b", "c"][: rng.randint(1, 3)])


def yaml_cases(random_count: int = 400) -> list[str]:
    rng = random.Random(24)
    generated: list[str] = []
    while len(generated) < random_count:
        text = _random_yaml(rng)
        if text not in generated:
            generated.append(text)
    return YAML_HAND_WRITTEN + generated


# ------------------------------------------------------------------------- quantities

QUANTITY_HAND_WRITTEN = [
    "512m", "1m", ".5", "1e-9", "0.0001", "1n", "0", "4", "1.5Gi", "1000m", "1e4294967296", "+000",
    "-1.5", "1.", ".5e3", "1e-10", "99999999999Ei", "0.0000000001", "00", "-0", "+", "-", ".", "",
    "Mi", "Ki", "Pi", "Ei", "M", "e-10", "1Ki", "1K", "1k", "1e", "1E", "1E3", "1e+3", "1e-3", "1e3.5",
    "1.5.5", "1Mi5", "1 ", "1.1Ki", "0.5Gi", "512Mi", "511Mi", "536870912", "536870911.9999999999",
    "536870912.0000000001", "1e9223372036854775807", "1e9223372036854775808", "7Ei", "8Ei", "16Ei",
    "9223372036854775807", "9223372036854775808", "1e18", "1e19", "123456789012345678901234567890",
    "0.000000000123456789Gi", "1Pi", "1025Ti", "1024Ti", "1.0000000001Gi", "2.5e2", "4Ee", "1Eii",
    "1ee3", "1Ke3", "64Mi", "63Mi", "0.0625Gi", "67108864", "1000000000000m", "+1Gi", "32Gi", "9e+02Mi",
]  # fmt: skip
_UNITS = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "e3", "e-3", "E+2", "e0", "e-12", "e21"]


def quantity_cases(random_count: int = 600) -> list[str]:
    rng = random.Random(24)
    cases = list(QUANTITY_HAND_WRITTEN)
    while len(cases) < len(QUANTITY_HAND_WRITTEN) + random_count:
        number = rng.choice(["", "+", "-"]) + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 22)))
        if rng.random() < 0.5:
            number += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 14)))
        case = number + rng.choice(_UNITS)
        if case not in cases:
            cases.append(case)
    return cases


# ----------------------------------------------------------------------------- images

HEX = "0123456789abcdef"
IMAGE_HAND_WRITTEN = [
    "ubuntu", "ubuntu:22.04", "library/ubuntu", "docker.io/ubuntu", "index.docker.io/ubuntu",
    "ghcr.io/mfpo/runtime:0.1.0", "localhost/mfpo-runtime:dev", "localhost:5000/x", "[::1]:5000/mfpo/runtime:v1",
    "registry.example.com:5000/team/runtime@sha256:" + "a" * 64,
    "ghcr.io/mfpo/runtime@sha256:" + "a" * 32,  # the case: sha256 takes 64
    "ghcr.io/mfpo/runtime@sha256:" + "A" * 64,  # upper case hex
    "ghcr.io/mfpo/runtime@sha256:" + "a" * 63,
    "ghcr.io/mfpo/runtime@sha256:" + "a" * 65,
    "ghcr.io/mfpo/runtime@sha384:" + "b" * 96,
    "ghcr.io/mfpo/runtime@sha512:" + "c" * 128,
    "ghcr.io/mfpo/runtime@sha512:" + "c" * 64,
    "ghcr.io/mfpo/runtime@md5:" + "d" * 32,
    "ghcr.io/mfpo/runtime@SHA256:" + "a" * 64,
    "ghcr.io/mfpo/runtime:1.0@sha256:" + "e" * 64,
    "a" * 64,  # an image ID
    "A" * 64,
    "a" * 64 + ":tag",
    "Foo/bar", "foo/Bar", "Foo", "my_reg.io/x", "my_reg.io/" + "x" * 250, "foo.bar/baz",
    "ghcr.io/" + "a" * 255, "ghcr.io/" + "a" * 256, "a/" + "b" * 253, "a/" + "b" * 254,
    "a" * 247, "a" * 248, "docker.io/" + "a" * 247, "docker.io/" + "a" * 248, "index.docker.io/" + "a" * 248,
    "docker.io/a/" + "b" * 253, "localhost/" + "a" * 255, "localhost/" + "a" * 256, "localhost:5000/" + "a" * 256,
    "ghcr.io/" + "/".join(["abcdefghij"] * 30),  # the 329-character path
    "", " ghcr.io/mfpo/runtime", "ghcr.io/mfpo/runtime ", "ghcr.io//runtime", "ghcr.io/mfpo/runtime:",
    "ghcr.io/MFPO/runtime", "ghcr.io/mfpo/runtime:" + "t" * 128, "ghcr.io/mfpo/runtime:" + "t" * 129,
    "a__b/c", "a___b/c", "a--b/c", "a.-b/c", "-a/b", "a-/b", "host:port/x", "[::1]/x", "[fe80::1%eth0]/x",
]  # fmt: skip


def image_cases(random_count: int = 300) -> list[str]:
    rng = random.Random(24)
    cases = list(IMAGE_HAND_WRITTEN)

    def component(length: int) -> str:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789._-") for _ in range(length))

    while len(cases) < len(IMAGE_HAND_WRITTEN) + random_count:
        parts = [component(rng.choice([1, 3, 8, 40, 120])) for _ in range(rng.randint(1, 4))]
        first = rng.choice(["", "ghcr.io/", "localhost/", "docker.io/", "index.docker.io/", "Reg/", "reg:5000/", "my_reg.io/"])
        image = first + "/".join(parts)
        if rng.random() < 0.3:
            image += ":" + rng.choice(["v1", "latest", "T_" * 30, "x" * 128])
        if rng.random() < 0.3:
            algorithm, length = rng.choice([("sha256", 64), ("sha384", 96), ("sha512", 128), ("sha256", 32), ("md5", 32)])
            image += f"@{algorithm}:" + "".join(rng.choice(HEX) for _ in range(length))
        if image not in cases:
            cases.append(image)
    return cases


# ------------------------------------------------------------------------- recording


def cases() -> dict[str, list[str]]:
    return {"yaml": yaml_cases(), "quantities": quantity_cases(), "images": image_cases()}


def record(binary: str) -> dict[str, Any]:
    asked = cases()
    out = subprocess.run([binary], input=json.dumps(asked), capture_output=True, text=True, check=True)
    answers = json.loads(out.stdout)
    assert all(set(answers[kind]) == set(asked[kind]) for kind in asked)
    return answers


def answers() -> dict[str, Any]:
    return json.loads(ANSWERS.read_text())


if __name__ == "__main__":
    recorded = record(sys.argv[1])
    ANSWERS.write_text(json.dumps(recorded, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"wrote {ANSWERS}: " + ", ".join(f"{len(v)} {k}" for k, v in recorded.items()))

"""tracking.flatten_params: the spec as MLflow params, by hand on small documents."""

from mfpo_runtime.tracking import MAX_PARAM_VALUE_LENGTH, flatten_params, redact


def test_nested_maps_and_lists_become_dotted_keys_with_string_values():
    doc = {"training": {"learningRate": 0.001, "precision": "fp32"},
           "evaluation": {"benchmarks": [{"name": "pope", "maxSamples": 5}]},
           "suspend": False, "resources": {"nodeSelector": {}, "tolerations": []}}  # fmt: skip
    assert flatten_params(doc) == {
        "training.learningRate": "0.001",
        "training.precision": "fp32",
        "evaluation.benchmarks.0.name": "pope",
        "evaluation.benchmarks.0.maxSamples": "5",
        "suspend": "False",
        "resources.nodeSelector": "{}",
        "resources.tolerations": "[]",
    }


def test_credentials_in_a_url_are_never_a_param():
    params = flatten_params({"storage": {"uri": "s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/runs"},
                             "other": "see https://user:hunter2@mlflow.example:5000/x and ftp://a:b@c"})  # fmt: skip
    assert params == {"storage.uri": "s3://***@bucket/runs",
                      "other": "see https://***@mlflow.example:5000/x and ftp://***@c"}  # fmt: skip
    assert redact("http://mlflow:5000/path@v1") == "http://mlflow:5000/path@v1"  # '@' after the host


def test_a_value_longer_than_mlflows_limit_is_cut_visibly():
    value = flatten_params({"text": "x" * (MAX_PARAM_VALUE_LENGTH + 10)})["text"]
    assert len(value) == MAX_PARAM_VALUE_LENGTH and value.endswith("…")

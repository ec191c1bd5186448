"""Hostile inputs, second round (issue 18): KerasHub functions and file-reading tokenizer arguments,
trust that unlocks only code, and the messages users get for malformed files.

Every refusal here happens before Keras reads the model; markers prove that nothing named in a
refused file was called.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from gradcam_desktop.core import allowlist, safety, scan
from gradcam_desktop.core.errors import ModelLoadError, UnsafeModelError, plain_reason
from gradcam_desktop.core.models import load_model
from hostile import rewrite_keras


def hub():
    return pytest.importorskip("keras_hub")


def _tiny() -> keras.Model:
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="head")(x))


def _lambda_model() -> keras.Model:
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.Conv2D(4, 3, name="conv")(x))
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="head")(x))


def _head(config: dict) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["name"] == "head")["config"]


def _hub_function(name: str, module: str) -> dict:
    """How Keras serializes a function KerasHub registers (keras_hub_export registers every export)."""
    return {"module": module, "class_name": "function", "config": f"keras_hub>{name}", "registered_name": "function"}


def _one_line(raised: pytest.ExceptionInfo) -> str:
    text = str(raised.value)
    assert "\n" not in text
    return text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    _tiny().save(path)
    return path


# ---------------------------------------------------------------- KerasHub functions are not building blocks

@pytest.mark.parametrize("argument, name, module", [
    ("activation", "upload_preset", "keras_hub.src.utils.preset_utils"),
    ("kernel_initializer", "compute_word_piece_vocabulary", "keras_hub.src.tokenizers.word_piece_tokenizer_trainer"),
    ("bias_initializer", "compute_sentence_piece_proto", "keras_hub.src.tokenizers.sentence_piece_tokenizer_trainer"),
    ("activation", "decode_imagenet_predictions", "keras_hub.src.utils.imagenet.imagenet_utils"),
])
def test_a_kerashub_function_is_refused_even_trusted(tiny, tmp_path, argument, name, module):
    hub()
    path = rewrite_keras(tiny, tmp_path / "hub_function.keras",
                    lambda config: _head(config).update({argument: _hub_function(name, module)}))
    for trust in (False, True):
        with pytest.raises(UnsafeModelError) as raised:
            safety.check_model_file(path, trust=trust)
        assert f"layer 'head' refers to 'keras_hub>{name}', which is not a model building block" in _one_line(raised)
        assert not raised.value.trustable


@pytest.fixture
def armed_hub_function(monkeypatch, tmp_path):
    """keras_hub's compute_word_piece_vocabulary replaced, where Keras and the allowlist find it, by a
    function that leaves a marker file when called: indistinguishable from the real one by name,
    module and registration."""
    hub()
    from keras.src.saving import object_registration
    from keras_hub.src.tokenizers import word_piece_tokenizer_trainer as trainer

    marker = tmp_path / "called"

    def compute_word_piece_vocabulary(shape, dtype=None, **kwargs):
        marker.touch()
        return keras.ops.zeros(shape, dtype=dtype)

    compute_word_piece_vocabulary.__module__ = trainer.__name__
    monkeypatch.setattr(trainer, "compute_word_piece_vocabulary", compute_word_piece_vocabulary)
    monkeypatch.setitem(object_registration.GLOBAL_CUSTOM_OBJECTS, "keras_hub>compute_word_piece_vocabulary",
                        compute_word_piece_vocabulary)
    return marker, _hub_function("compute_word_piece_vocabulary", trainer.__name__)


@pytest.mark.parametrize("suffix, form", [(".keras", "object"), (".keras", "name"), (".h5", "name")])
def test_a_kerashub_function_as_initializer_is_never_called(tiny, tmp_path, armed_hub_function, suffix, form):
    marker, initializer = armed_hub_function
    if form == "name":  # a plain string: Keras looks initializer names up among registered names too
        initializer = initializer["config"]
    if suffix == ".keras":
        path = rewrite_keras(tiny, tmp_path / "initializer.keras",
                        lambda config: _head(config).update(kernel_initializer=initializer))
    else:
        path = tmp_path / "initializer.h5"
        _tiny().save(path)
        with h5py.File(path, "r+") as f:
            config = json.loads(f.attrs["model_config"])
            _head(config).update(kernel_initializer=initializer)
            f.attrs["model_config"] = json.dumps(config)
    keras.saving.load_model(path)  # Keras alone, in safe mode: builds the layer, calls the "initializer"
    assert marker.exists()
    marker.unlink()
    for trust in (False, True):
        with pytest.raises(UnsafeModelError, match="keras_hub>compute_word_piece_vocabulary"):
            load_model(path, trust=trust)
    assert not marker.exists()


def test_kerashub_building_blocks_still_pass_and_its_tools_do_not():
    keras_hub = hub()
    from keras_hub.src.utils.keras_utils import gelu_approximate

    # A user's own layer stack with KerasHub's GELU approximation (the one function on the list).
    inputs = keras.Input((6, 8))
    x = keras_hub.layers.TransformerEncoder(intermediate_dim=16, num_heads=2,
                                            activation=gelu_approximate)(inputs)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(keras.Model(inputs, x))))
    assert "keras_hub>gelu_approximate" in json.dumps(config)
    scan.scan_config(config)
    assert set(allowlist.HUB_FUNCTIONS) == {"keras_hub.src.utils.keras_utils.gelu_approximate"}
    for name, module in (("TopKSampler", "keras_hub.src.samplers.top_k_sampler"),
                         ("Perplexity", "keras_hub.src.metrics.perplexity")):
        node = {"module": module, "class_name": name, "config": {}, "registered_name": f"keras_hub>{name}"}
        assert allowlist.judge(node).kind == "keras", name
    tokenizer = json.loads(json.dumps(keras.saving.serialize_keras_object(
        keras_hub.tokenizers.SentencePieceTokenizer(name="tok"))))
    assert allowlist.judge(tokenizer).kind == "ok"
    scan.scan_config(tokenizer)  # proto None: the proto travels in the file's assets


# ---------------------------------------------------------------- trust unlocks code, never file reads

def _tokenizer(kind: str, **arguments) -> dict:
    module = {"SentencePieceTokenizer": "sentence_piece_tokenizer", "BytePairTokenizer": "byte_pair_tokenizer",
              "WordPieceTokenizer": "word_piece_tokenizer"}[kind]
    return {"module": f"keras_hub.src.tokenizers.{module}", "class_name": kind, "registered_name": f"keras_hub>{kind}",
            "config": {"name": "tok", "trainable": True, "config_file": "tokenizer.json", **arguments},
            "inbound_nodes": [], "name": "tok"}


@pytest.fixture(scope="module")
def trusted_lambda_files(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Lambda models (trusted below) that also carry a KerasHub tokenizer naming a file to read."""
    hub()
    folder = tmp_path_factory.mktemp("lambda_hub")
    plain = folder / "lambda.keras"
    _lambda_model().save(plain)
    fifo = folder / "merges.fifo"
    os.mkfifo(fifo)  # opening it for reading blocks until someone writes: a hang, not an error
    tokenizers = {
        "proto.keras": (_tokenizer("SentencePieceTokenizer", proto="/dev/zero"), r"would read the file '/dev/zero' \(proto\)"),
        "merges.keras": (_tokenizer("BytePairTokenizer", vocabulary={"a": 0, "b": 1, "ab": 2}, merges=str(fifo)),
                         r"would read the file '.*merges\.fifo' \(merges\)"),
        "wordpiece.keras": (_tokenizer("WordPieceTokenizer", vocabulary="/etc/hostname"),
                            r"would read the file '/etc/hostname' \(vocabulary\)"),
    }
    files = {}
    for name, (node, pattern) in tokenizers.items():
        files[name] = (rewrite_keras(plain, folder / name, lambda config, node=node: config["config"]["layers"].append(node)),
                       pattern)
    return files


def test_trust_does_not_unlock_a_tokenizer_reading_a_file(trusted_lambda_files):
    for name, (path, pattern) in trusted_lambda_files.items():
        with pytest.raises(UnsafeModelError, match=pattern) as raised:
            safety.check_model_file(path, trust=True)
        assert "trusted or not" in _one_line(raised), name
        assert not raised.value.trustable


def test_the_cli_refuses_them_in_one_line_trusted(trusted_lambda_files):
    # In a child process: were a file ever read, /dev/zero would exhaust memory and the FIFO hang,
    # which the timeout turns into a failure instead of a stuck test run.
    code = ("import contextlib, io, json, sys\n"
            "from gradcam_desktop import cli\n"
            "results = {}\n"
            "for name, path in json.loads(sys.argv[1]).items():\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err):\n"
            "        status = cli.main(['layers', '--model', path, '--trust-model'])\n"
            "    results[name] = [status, err.getvalue()]\n"
            "print(json.dumps(results))\n")
    paths = {name: str(path) for name, (path, _) in trusted_lambda_files.items()}
    child = subprocess.run([sys.executable, "-c", code, json.dumps(paths)], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    results = json.loads(child.stdout.strip().splitlines()[-1])
    import re

    for name, (_, pattern) in trusted_lambda_files.items():
        status, err = results[name]
        lines = err.strip().splitlines()
        assert status == 1 and len(lines) == 1 and lines[0].startswith("Error: Refused"), (name, err)
        assert re.search(pattern, lines[0]), (name, lines[0])


def test_the_refused_arguments_really_read_files_once_safe_mode_is_off(tmp_path):
    # Why they are refused: trusted Lambda code makes the loader switch safe mode off, and then
    # KerasHub opens whatever path the config names.
    keras_hub = hub()
    from keras.src.saving import serialization_lib

    merges = tmp_path / "merges.txt"
    merges.write_text("a b\n", encoding="utf-8")
    config = {"name": "bpe", "vocabulary": {"a": 0, "b": 1, "ab": 2}, "merges": str(merges)}
    with serialization_lib.SafeModeScope(False):
        tokenizer = keras_hub.tokenizers.BytePairTokenizer.from_config(config)
    assert list(tokenizer.merges) == ["a b"]


def test_file_arguments_cannot_hide_behind_a_class_name_and_inline_protos_are_data():
    with pytest.raises(UnsafeModelError, match="would read the file '/etc/passwd'"):
        scan.scan_config({"class_name": "__numpy__", "vocabulary": "/etc/passwd"})
    with pytest.raises(UnsafeModelError, match=r"\(language_tokens\)"):
        scan.scan_config({"config": {"name": "whisper", "language_tokens": "/etc/passwd"}})
    import base64

    inline = base64.b64encode(bytes(range(256)) * 12).decode()  # > 2048 characters of base64: bytes
    scan.scan_config({"name": "tok", "proto": inline})
    with pytest.raises(UnsafeModelError, match=r"\(proto\)"):
        scan.scan_config({"name": "tok", "proto": "/etc/" + "x" * 3000})  # long, but a path


# ---------------------------------------------------------------- messages that say what happened

def test_an_h5_whose_model_config_is_not_text_is_not_called_weights_only(tmp_path):
    path = tmp_path / "numbers.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = 42
        f.attrs["layer_names"] = [b"dense"]
    with pytest.raises(ModelLoadError) as raised:
        safety.check_model_file(path)
    text = _one_line(raised)
    assert "its model_config is not the JSON text Keras writes there" in text
    assert "weights only" not in text and "model.save('model.keras')" not in text


def test_an_hdf5_file_that_is_not_keras_is_not_told_to_resave(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("pixels", data=np.zeros((4, 4), "float32"))
        f.attrs["note"] = "not a model"
    with pytest.raises(ModelLoadError) as raised:
        safety.check_model_file(path)
    text = _one_line(raised)
    assert "is an HDF5 file but not a Keras model (no model config, no Keras weights)" in text
    assert "weights only" not in text and "save the whole model" not in text


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["config"].update(output_layers=[["head", "x", 0]]),
     r"its config is malformed \(Keras stopped on a Python TypeError\), as in a damaged or hand-edited file; "
     r"open the model as Keras saved it\.?$"),
    (lambda c: c["config"].update(input_layers="abc"),
     r"its config nests objects deeper than Keras can follow, which only a damaged or crafted file does; "
     r"open the model as Keras saved it\.?$"),
])
def test_raw_python_errors_from_keras_are_put_in_words(tiny, tmp_path, edit, expected):
    path = rewrite_keras(tiny, tmp_path / "malformed.keras", edit)
    with pytest.raises(ModelLoadError, match=r"^Cannot open model malformed\.keras: " + expected) as raised:
        load_model(path)
    text = _one_line(raised)
    assert "list indices" not in text and "recursion depth" not in text


def test_a_kerashub_safe_mode_refusal_never_advises_safe_mode_false():
    keras_hub = hub()
    from keras.src.saving import serialization_lib

    with serialization_lib.SafeModeScope(True), pytest.raises(ValueError, match="safe_mode=False") as raised:
        keras_hub.tokenizers.SentencePieceTokenizer(proto="/srv/models/spm.model")
    reason = plain_reason(raised.value)
    assert "safe_mode" not in reason and "enable_unsafe" not in reason and "\n" not in reason
    assert reason.startswith("it asks Keras to read a file outside the model (Proto file '/srv/models/spm.model')")
    assert "never allows, trusted or not" in reason
    lambda_refusal = ValueError("Requested the deserialization of a Python lambda. This carries a potential risk of "
                                "arbitrary code execution and thus it is disallowed by default. If you trust the "
                                "source of the artifact, you can override this error by passing `safe_mode=False` "
                                "to the loading function, or calling `keras.config.enable_unsafe_deserialization()`.")
    assert plain_reason(lambda_refusal) == ("Keras' safe mode refused the deserialization of a Python lambda, which "
                                            "could run code; Grad-CAM Desktop does not switch safe mode off for it "
                                            "(--trust-model allows only Lambda code stored in the file)")


def test_ordinary_keras_errors_keep_their_words():
    # A KeyError raised while handling another error is not what is shown.
    try:
        try:
            {}["units"]
        except KeyError:
            raise ValueError("Unrecognized keyword arguments passed to Dense: {'foo': 1}") from None
    except ValueError as error:
        assert plain_reason(error) == "Unrecognized keyword arguments passed to Dense: {'foo': 1}"

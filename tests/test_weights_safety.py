"""Weights never run code: every loader of the project, fed files made to run code as they load.

Each payload, if anything in it ran, would create a marker file (its own, in the test's
folder); every loader must refuse each one with a one-line typed error naming the file,
and the marker must not exist afterwards:

- ``pickle.pth``: a plain pickle whose ``__reduce__`` calls ``exec`` (torch's legacy format);
- ``pickle-zip.pth``: that pickle as ``data.pkl`` of a zip laid out as ``torch.save`` writes it;
- ``pickle-script.pt``: that pickle as ``data.pkl`` of a zip laid out as a TorchScript archive;
- ``setstate.pt``: a real TorchScript module (``torch.jit.script`` + ``save``) whose
  ``__setstate__`` creates the marker through ``torch.from_file(..., shared=True)``, which
  ``torch.jit.load`` runs while loading (the same call can overwrite any file);
- ``setstate.png``: a valid PNG with that archive appended (offsets adjusted, so
  ``torch.jit.load`` reads it): an image to an upload check, a model to a loader;
- ``pickle.safetensors``: the pickle under a safetensors name.

Loaders: :func:`artwalk.weights.read_weights` (Real-ESRGAN and FILM state dicts go
through it), the FILM engine (and its stage CLI), the Real-ESRGAN engine, a diffusers
pipeline folder (:func:`diffusion_models.runtime.load_pipeline`) and transformers folders
(``artwalk inspire``'s MagicPrompt, ``artwalk interrogate``'s BLIP) whose ``.bin`` weights are
the payloads: there ``torch.load(weights_only=True)`` refuses them, and the line says so
without torch's advice to load them unsafely.
"""

from __future__ import annotations

import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from artwalk.errors import ArtwalkError, UnsupportedWeightsError
from artwalk.weights import read_torchscript, read_weights
from conftest import DEVICE, EXAMPLES, run_cli, small_copy

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning"),  # the payloads are TorchScript
    pytest.mark.filterwarnings("ignore:'torch.load' received a zip file that looks like a TorchScript"),
]


class _Exec:
    """Pickled as ``exec(code)``: unpickling it runs ``code``."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


class _WritesOnLoad(nn.Module):
    """A module whose TorchScript ``__setstate__`` creates (or overwrites) the file at ``path``."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))
        self.path = path
        self.mapped = torch.zeros(4, dtype=torch.uint8)  # an attribute, so the write is not optimised away

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool, torch.Tensor]:
        return self.path, self.training, self.weight

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool, torch.Tensor]) -> None:
        self.path, self.training, self.weight = state[0], state[1], state[2]
        self.mapped = torch.from_file(state[0], shared=True, size=4, dtype=torch.uint8)
        self.mapped.fill_(33)


def _zip(path: Path, records: dict[str, bytes], prefix: bytes = b"") -> Path:
    path.write_bytes(prefix)
    with zipfile.ZipFile(path, "a") as zf:  # after a prefix, offsets count from the file's start
        for name, data in records.items():
            zf.writestr(name, data)
    return path


PAYLOADS = ["pickle.pth", "pickle-zip.pth", "pickle-script.pt", "setstate.pt", "setstate.png", "pickle.safetensors"]


def _make(name: str, path: Path, marker: Path) -> Path:
    """Payload ``name`` at ``path``, made to create ``marker`` if anything in it runs."""
    evil = pickle.dumps(_Exec(f"open({str(marker)!r}, 'w').write('ran')"), protocol=2)  # as torch writes
    if name in ("pickle.pth", "pickle.safetensors"):
        path.write_bytes(evil)
    elif name == "pickle-zip.pth":
        _zip(path, {"archive/data.pkl": evil, "archive/byteorder": b"little", "archive/version": b"3\n"})
    elif name == "pickle-script.pt":
        _zip(path, {"archive/data.pkl": evil, "archive/code/__torch__.py": b"class Module:\n  pass\n",
                    "archive/constants.pkl": pickle.dumps((), protocol=2), "archive/version": b"3\n"})
    elif name == "setstate.pt":
        torch.jit.script(_WritesOnLoad(str(marker))).save(str(path))
    else:
        archive = _make("setstate.pt", path.with_name(path.stem + "_archive.pt"), marker)
        with zipfile.ZipFile(archive) as src:
            records = {info.filename: src.read(info) for info in src.infolist()}
        archive.unlink()
        ok, png = cv2.imencode(".png", np.full((8, 8, 3), 200, np.uint8))
        _zip(path, records, prefix=png.tobytes())
        assert cv2.imread(str(path)).shape == (8, 8, 3)  # an image to an image reader
    return path


@pytest.fixture(scope="module")
def payloads(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """payload name -> (file, the marker it would create)."""
    folder = tmp_path_factory.mktemp("payloads")
    return {name: (_make(name, folder / name, folder / f"{name}.ran"), folder / f"{name}.ran") for name in PAYLOADS}


def _refused(load, path: Path, marker: Path, reason: str, error=UnsupportedWeightsError) -> None:
    with pytest.raises(error) as err:
        load(path)
    assert not marker.exists(), f"{path.name} ran code while loading"
    message = str(err.value)
    assert "\n" not in message and path.name in message, message
    assert reason in message, message


# The one line each kind of loader gives for each payload.
_WEIGHTS_REASONS = {
    "pickle.pth": "holds Python objects besides tensors, which are not loaded because that could run code",
    "pickle-zip.pth": "holds Python objects besides tensors, which are not loaded because that could run code",
    "pickle-script.pt": "it is a TorchScript archive, which runs the code it carries when it is loaded",
    "setstate.pt": "it is a TorchScript archive, which runs the code it carries when it is loaded",
    "setstate.png": "it is a TorchScript archive, which runs the code it carries when it is loaded",
    "pickle.safetensors": "not a readable safetensors file",
}
_FILM_REASONS = {
    **_WEIGHTS_REASONS,
    "pickle-script.pt": "it is a TorchScript archive that names __builtin__.exec, which is not loaded because that "
                        "could run code",
    "setstate.pt": "keeps a custom state that its own code (__setstate__) rebuilds when torch loads it",
    "setstate.png": "other data comes before its TorchScript archive",
}


@pytest.mark.parametrize("name", PAYLOADS)
def test_weights_files_are_read_as_tensors_or_refused(payloads, name):
    path, marker = payloads[name]
    _refused(lambda p: read_weights(p, "weights"), path, marker, _WEIGHTS_REASONS[name])


@pytest.mark.parametrize("name", PAYLOADS)
def test_film_runs_nothing_in_its_weights_file(payloads, name):
    from frame_interpolation.film import FilmEngine

    path, marker = payloads[name]
    _refused(lambda p: FilmEngine(p, device=DEVICE), path, marker, _FILM_REASONS[name])
    if name in ("setstate.pt", "setstate.png"):  # the reader refuses them too, not only the engine
        _refused(read_torchscript, path, marker, _FILM_REASONS[name])


@pytest.mark.parametrize("name", PAYLOADS)
def test_realesrgan_runs_nothing_in_its_weights_file(payloads, name):
    from super_resolution.realesrgan import RealESRGANEngine

    path, marker = payloads[name]
    _refused(lambda p: RealESRGANEngine(model=str(p), device=DEVICE), path, marker, _WEIGHTS_REASONS[name])


def test_the_film_stage_refuses_an_image_that_carries_an_archive(payloads, tmp_path):
    """The issue's case end to end: the PNG polyglot named as the FILM model of a walk's stage 2."""
    from diffusion_models import KeyframeConfig
    from diffusion_models import run as run_keyframes

    images = tmp_path / "in"
    images.mkdir()
    for k, src in enumerate(sorted(EXAMPLES.glob("0*"))[:2]):
        small_copy(src, images / f"{k}.png", 48)
    run_keyframes(KeyframeConfig(images, tmp_path / "out", width=32, height=32, progress=False))
    path, marker = payloads["setstate.png"]
    proc = run_cli("-m", "frame_interpolation", str(tmp_path / "out"), "--engine", "film", "--model", str(path))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert not marker.exists(), f"{path.name} ran code while loading"
    assert proc.returncode != 0 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert path.name in errors[0] and "other data comes before its TorchScript archive" in errors[0]


def test_damaged_archives_are_one_line(tmp_path):
    """The reader checks what it reads: records stored (no zip bombs), storages of the size the
    pickle says, a module at the root."""
    good = tmp_path / "good.pt"
    torch.jit.script(nn.Sequential(nn.Conv2d(1, 2, 1))).save(str(good))
    assert set(read_torchscript(good).tensors) == {"0.weight", "0.bias"}
    with zipfile.ZipFile(good) as src:
        records = {info.filename: src.read(info) for info in src.infolist()}
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in records.items():
            zf.writestr(name, data)
    short = _zip(tmp_path / "short.pt", {k: v[:-4] if k == "good/data/0" else v for k, v in records.items()})
    cases = {deflated: "is compressed", short: "storage 0 holds 4 bytes, not 2 x",
             tmp_path / "nowhere.pt": "not found"}
    for path, reason in cases.items():
        with pytest.raises(ArtwalkError) as err:
            read_torchscript(path)
        assert "\n" not in str(err.value) and path.name in str(err.value) and reason in str(err.value), err.value


# ------------------------------------------------------------------- diffusers and transformers folders

_BIN_PAYLOADS = ["pickle.pth", "pickle-zip.pth", "setstate.pt"]


def _says_why(error: Exception, folder: Path, name: str) -> None:
    """One line naming the folder, why the file was refused, and never how to load it unsafely."""
    message = str(error)
    assert "\n" not in message and str(folder) in message and "nothing in it was run" in message, message
    assert ("TorchScript" if name == "setstate.pt" else "could run code") in message, message
    assert "weights_only" not in message and "trust" not in message, message


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory) -> Path:
    """A tiny diffusers pipeline folder (DDPM: a UNet and a scheduler) with .bin weights."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(4,),
                       down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",), norm_num_groups=2,
                       attention_head_dim=2)
    folder = tmp_path_factory.mktemp("pipeline") / "ddpm"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(folder, safe_serialization=False)
    assert (folder / "unet" / "diffusion_pytorch_model.bin").is_file()
    return folder


@pytest.mark.parametrize("name", _BIN_PAYLOADS)
def test_a_diffusers_folder_runs_nothing_in_its_bin_weights(payloads, pipeline_folder, tmp_path, name):
    from diffusers import DiffusionPipeline

    from diffusion_models.runtime import load_pipeline

    folder = tmp_path / "ddpm"
    shutil.copytree(pipeline_folder, folder)
    path, marker = payloads[name]
    shutil.copyfile(path, folder / "unet" / "diffusion_pytorch_model.bin")
    assert load_pipeline(DiffusionPipeline, str(pipeline_folder), "test model", progress=False) is not None
    with pytest.raises(ArtwalkError) as err:
        load_pipeline(DiffusionPipeline, str(folder), "test model", progress=False)
    _says_why(err.value, folder, name)
    assert not marker.exists()


@pytest.fixture(scope="module")
def language_model_folder(tmp_path_factory) -> Path:
    """A tiny GPT-2 folder, its weights in pytorch_model.bin."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gpt2")
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=16, n_positions=8))
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("name", _BIN_PAYLOADS)
def test_a_transformers_folder_runs_nothing_in_its_bin_weights(payloads, language_model_folder, tmp_path, name):
    from transformers import AutoModelForCausalLM

    from pipeline.inspire import MagicPrompt

    assert AutoModelForCausalLM.from_pretrained(language_model_folder, local_files_only=True) is not None
    folder = tmp_path / "gpt2"
    shutil.copytree(language_model_folder, folder)
    path, marker = payloads[name]
    shutil.copyfile(path, folder / "pytorch_model.bin")
    with pytest.raises(ArtwalkError) as err:
        MagicPrompt.load(str(folder))
    _says_why(err.value, folder, name)
    assert not marker.exists()


def test_an_interrogate_model_folder_runs_nothing_in_its_bin_weights(payloads, tmp_path):
    import tiny_models
    from PIL import Image

    from pipeline.interrogate import InterrogateConfig, Models

    folder = tiny_models.blip_captioner(tmp_path / "blip")
    (folder / "model.safetensors").unlink()
    path, marker = payloads["pickle-zip.pth"]
    shutil.copyfile(path, folder / "pytorch_model.bin")
    models = Models(InterrogateConfig(folder=tmp_path, caption_model=str(folder), mode="caption", device=DEVICE,
                                      progress=False))
    with pytest.raises(ArtwalkError) as err:
        models.caption(Image.new("RGB", (32, 32)))
    _says_why(err.value, folder, "pickle-zip.pth")
    assert not marker.exists()


def test_the_payloads_do_run_code_when_loaded_unsafely(tmp_path):
    """The payloads are not duds: loaded the unsafe way (copies made here, loaded only here),
    each one runs its code."""
    unsafe = {
        "pickle.pth": lambda p: pickle.loads(p.read_bytes()),
        "pickle-zip.pth": lambda p: torch.load(p, weights_only=False),
        "setstate.pt": lambda p: torch.jit.load(str(p)),
        "setstate.png": lambda p: torch.jit.load(str(p)),
    }
    for name, load in unsafe.items():
        marker = tmp_path / f"{name}.ran"
        load(_make(name, tmp_path / name, marker))
        assert marker.is_file(), name
        if name.startswith("setstate"):
            assert marker.read_bytes() == b"!" * 4, name  # written by the archive's __setstate__

"""Fetching weights: ``artwalk models download NAME`` and ``artwalk models list``.

A file model streams over HTTP(S) (urllib, no extra dependency) into the artwalk
cache (:func:`artwalk.models.cache_dir`)::

    <cache>/
        <file>.part     the bytes so far; the next call resumes it (Range: bytes=N-)
        <file>          renamed into place only once its sha256 matched
        <file>.sha256   its checksum, "<sha256>  <file>", checked again on every load

The checksum is the one pinned in the registry; for a file without one it is the
checksum recorded at the first download (trust on first use), and with ``force``
whatever arrives is trusted anew. A checksum mismatch deletes the ``.part``; a
broken connection keeps it for the next call to resume. Nothing ever appears at
the final name unverified.

A hub model goes through ``huggingface_hub`` into the normal Hugging Face cache
(``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT`` and ``HF_TOKEN`` apply), fetching
only the diffusers folders, in float32 safetensors. With ``HF_HUB_OFFLINE`` set
nothing is fetched: a cached model is reported, a missing one is one line.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from artwalk import __version__
from artwalk.errors import ChecksumError, ConfigError, DiskFullError, DownloadError, WeightsMissingError
from artwalk.fsutil import disk_errors, free_bytes, human_bytes, make_dir, sha256_file
from artwalk.models import REGISTRY, ModelSpec, cache_dir, get_spec, hf_offline, record_sha256, recorded_sha256, \
    weights_file
from artwalk.progress import drawing, progress as progress_bar

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60.0  # per socket operation, not for the whole transfer

# Hub repositories also hold single-file checkpoints, fp16 variants, Flax and ONNX
# copies; a diffusers pipeline needs only its folders (used when diffusers is absent).
HUB_ALLOW = ["model_index.json", "*/*.json", "*/*.txt", "*/*.model", "*/*.safetensors"]
HUB_IGNORE = ["*.fp16.*", "*non_ema*", "*.ckpt", "*.msgpack", "*.onnx*", "*.pb"]
# A transformers model (config.json at the top): its config, tokenizer files and one copy of
# its weights (see :func:`model_allow`).
MODEL_ALLOW = ["*.json", "*.txt", "*.model"]


@dataclass(frozen=True)
class ModelRow:
    """One line of ``artwalk models list``."""

    name: str
    kind: str
    stage: str
    present: bool
    licence: str
    source: str


def list_models() -> list[ModelRow]:
    """Every registered model and whether it is on this machine (no network)."""
    return [ModelRow(s.name, s.kind, s.stage, is_present(s), s.licence, s.source) for s in REGISTRY.values()]


def format_models_table(rows: list[ModelRow]) -> str:
    header = ("name", "kind", "stage", "present", "licence", "source")
    cells = [header] + [(r.name, r.kind, r.stage, "yes" if r.present else "no", r.licence, r.source) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in cells)


def is_present(spec: ModelSpec) -> bool:
    """Whether the weights are here: the file in the cache, or the pipeline in the HF cache."""
    if spec.kind == "file":
        return (cache_dir() / spec.filename).is_file()
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(spec.source, spec.index), str)


def download(name: str, *, url: str | None = None, force: bool = False, progress: bool = True) -> Path:
    """Fetch model ``name`` (a registry name, or a hub id ``owner/repo``); return where it is.

    ``url`` replaces the registry URL of a file model (a mirror: a pinned checksum
    still applies). ``force`` fetches again even when the weights are present.
    """
    spec = _spec_for(name)
    if spec.kind == "hub":
        if url:
            raise ConfigError(f"--url applies to file models; {spec.name} is a Hugging Face hub folder ({spec.source})")
        return _download_hub(spec, force=force, progress=progress)
    return _download_file(spec, url or spec.source, force=force, progress=progress)


def _spec_for(name: str) -> ModelSpec:
    if name in REGISTRY:
        return REGISTRY[name]
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not Path(name).exists():
        return ModelSpec(name, "hub", name, "-", "see its model card", "hub id given on the command line")
    return get_spec(name)  # raises: unknown model


# ---------------------------------------------------------------------------------------------
# File models

def _download_file(spec: ModelSpec, url: str, *, force: bool, progress: bool) -> Path:
    folder = make_dir(cache_dir(), "model cache (ARTWALK_CACHE)")
    final = folder / spec.filename
    part = final.with_name(final.name + ".part")
    if force:
        part.unlink(missing_ok=True)
    elif final.is_file():
        path = weights_file(spec.name)  # checks the checksum; one line if it fails
        log.info("%s is already in %s", spec.name, folder)
        return path
    expected = spec.sha256 or (None if force else recorded_sha256(final))

    _fetch(url, part, spec.filename, progress=progress)
    got = sha256_file(part)
    if expected is not None and got != expected:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{spec.filename} from {url} is not the expected file (sha256 expected {expected}, got {got});"
            " the download was deleted: rerun, or pass --url to use another mirror"
        )
    with disk_errors(final):
        os.replace(part, final)
    record_sha256(final, got)
    if expected is None:
        log.info("%s: no checksum pinned; recorded sha256 %s for later loads (trust on first use)", spec.filename, got)
    log.info("%s: %s (%s)", spec.name, final, human_bytes(final.stat().st_size))
    return final


def _fetch(url: str, part: Path, label: str, *, progress: bool, _retried: bool = False) -> None:
    """Append the rest of ``url`` to ``part``; resume when ``part`` already holds a prefix."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"artwalk/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have and not _retried:
            total = _range_total(exc.headers.get("Content-Range"))
            if total == have:  # a finished transfer that was never renamed: the checksum decides
                return
            log.info("%s: the server refused to resume; starting over", label)
            part.unlink()
            return _fetch(url, part, label, progress=progress, _retried=True)
        raise _network_error(label, url, f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _network_error(label, url, _reason(exc)) from None

    with resp:
        mode = "wb"
        if have and resp.status == 206:
            if not (resp.headers.get("Content-Range") or "").startswith(f"bytes {have}-"):
                if _retried:
                    raise _network_error(label, url, f"bad Content-Range {resp.headers.get('Content-Range')!r}")
                log.info("%s: the server resumed at the wrong place; starting over", label)
                resp.close()
                part.unlink()
                return _fetch(url, part, label, progress=progress, _retried=True)
            mode = "ab"
            log.info("%s: resuming at %s", label, human_bytes(have))
        elif have:
            log.info("%s: the server does not resume (HTTP %s); starting over", label, resp.status)
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        if total is not None and total - have > free_bytes(part.parent):
            raise DiskFullError(
                f"no space for {label} in {part.parent}: it needs {human_bytes(total - have)},"
                f" {human_bytes(free_bytes(part.parent))} free"
            )
        bar = progress_bar(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                           desc=label, enabled=progress)
        with bar, disk_errors(part), open(part, mode) as fh:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (http.client.HTTPException, OSError) as exc:
                    raise _network_error(label, url, _reason(exc), part=part) from None
                if not chunk:
                    break
                fh.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        reason = f"the connection closed after {human_bytes(size)} of {human_bytes(total)}"
        raise _network_error(label, url, reason, part=part)


def _range_total(content_range: str | None) -> int | None:
    m = re.fullmatch(r"bytes \*/(\d+)", (content_range or "").strip())
    return int(m.group(1)) if m else None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(reason).split()) or type(exc).__name__


def _network_error(label: str, url: str, reason: str, part: Path | None = None) -> DownloadError:
    kept = " (the partial file is kept; rerun to resume)" if part is not None and part.exists() else ""
    return DownloadError(f"could not download {label} from {url}: {reason}{kept}; check the network or pass --url")


# ---------------------------------------------------------------------------------------------
# Hub models

def _download_hub(spec: ModelSpec, *, force: bool, progress: bool) -> Path:
    try:
        import huggingface_hub
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    except ImportError:
        raise ConfigError(
            f"{spec.name} is a Hugging Face hub model: install the neural extras (huggingface_hub, diffusers)"
        ) from None
    what = f"{spec.name} ({spec.source})" if spec.name != spec.source else spec.source
    if hf_offline():
        try:
            folder = huggingface_hub.snapshot_download(spec.source, local_files_only=True)
        except (LocalEntryNotFoundError, OSError):
            raise WeightsMissingError(
                f"HF_HUB_OFFLINE is set, so {what} cannot be fetched: unset it and rerun"
                f" `artwalk models download {spec.name}`"
            ) from None
        log.info("HF_HUB_OFFLINE is set; %s is already in the Hugging Face cache: %s", what, folder)
        return Path(folder)

    log.info("%s: fetching into the Hugging Face cache (licence: %s)", what, spec.licence)
    silence = not (progress and drawing()) and not are_progress_bars_disabled()
    try:
        if silence:
            disable_progress_bars()
        info = huggingface_hub.HfApi().model_info(spec.source)  # one quick call: network, missing or gated repo
        folder = _hub_fetch(spec, force, [s.rfilename for s in info.siblings or []])
    except GatedRepoError:
        raise DownloadError(
            f"{what} is gated on the Hugging Face hub: accept its licence on huggingface.co/{spec.source}"
            " and set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise DownloadError(
            f"{what} is not on the Hugging Face hub (withdrawn, renamed or private): pass a mirror's hub id"
            " or a local folder instead"
        ) from None
    except _hub_errors() as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise DownloadError(
            f"could not download {what} from the Hugging Face hub: {first};"
            " check the network (and HF_ENDPOINT, HF_TOKEN)"
        ) from None
    finally:
        if silence:
            enable_progress_bars()
    log.info("%s: %s", what, folder)
    return Path(folder)


def _hub_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a hub transfer raises: huggingface_hub's own, OS errors, and its HTTP client's."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    errors: tuple[type[BaseException], ...] = (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError)
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors += (getattr(__import__(module), name),)
        except (ImportError, AttributeError):
            pass
    return errors


def model_allow(files: list[str]) -> list[str]:
    """What to fetch of a transformers model whose repository holds ``files``: the top-level
    config and tokenizer files, and its weights once: ``model*.safetensors`` where there are
    any, else ``pytorch_model*.bin``. (Repositories often hold the same weights two to four
    times: .bin, .safetensors, open_clip and TF copies; ViT-H/14 is 3.9 GB each.)"""
    top = [f for f in files if "/" not in f]
    safetensors = [f for f in top if f.startswith("model") and f.endswith(".safetensors")]
    return MODEL_ALLOW + (["model*.safetensors"] if safetensors else ["pytorch_model*.bin"])


def _hub_fetch(spec: ModelSpec, force: bool, files: list[str]) -> str:
    """The files ``from_pretrained`` will read: for a pipeline, diffusers chooses them when it
    is installed; a transformers model (no model_index.json) takes :func:`model_allow`'s."""
    from huggingface_hub import snapshot_download

    if spec.index != "model_index.json":
        return snapshot_download(spec.source, allow_patterns=model_allow(files), force_download=force)
    try:
        from diffusers import DiffusionPipeline
    except ImportError:
        return snapshot_download(spec.source, allow_patterns=HUB_ALLOW, ignore_patterns=HUB_IGNORE,
                                 force_download=force)
    return str(DiffusionPipeline.download(spec.source, force_download=force))

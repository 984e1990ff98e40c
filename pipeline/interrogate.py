"""Prompts from images: ``artwalk interrogate``'s library. It makes prompts, not keyframes: the top
floor runs it before stage 1, which reads the desc.csv it writes (:mod:`artwalk.prompts`).

::

    FOLDER/                          FOLDER/
      01 harbour.jpg                   desc.csv                 image,prompt (utf-8, natural order)
      02_dunes.png       --->            01 harbour.jpg,"a harbour at dusk, an oil painting, by ..."
      notes.txt (skipped)              .desc.csv.artwalk.json   what each row was made from (hidden)

    <artwalk cache>/interrogate/<key>.safetensors   phrase embeddings, per CLIP model and list

Each image gets a caption from BLIP (``BlipForConditionalGeneration``, greedy, so the
same image gives the same words) and, except in ``caption`` mode, a CLIP model
(``CLIPModel``) ranks the shipped phrase lists (``phrases/interrogate/``: mediums,
movements, artists, flavors, trending) against it by the cosine similarity of their
projected embeddings. The modes:

- ``classic``: ``caption, medium, by artist, trending, movement, flavour, flavour, flavour``
  (the best-ranked of each list);
- ``fast``: the caption, then the best-ranked phrases of all lists together;
- ``best``: a greedy chain from the caption over the best-ranked ``BEST_POOL`` phrases:
  each step adds the phrase that most raises the similarity of the whole prompt to the
  image, until none does; then whichever of that, classic, fast and the caption scores
  best;
- ``caption``: BLIP alone.

Tokens are counted by the target diffusion model's tokenizer (``--tokenizer``: a
pipeline's ``tokenizer/``; default the CLIP model's own, the same BPE as SD's), at most
``--max-tokens`` (75, what fits SD's 77 with its start and end tokens; 0: no limit).
A prompt is cut at phrase boundaries, and a caption that alone is too long at a word
boundary, never inside a word.

Reruns: phrase embeddings are cached on disk, keyed by the CLIP model's identity (its
files) and the list's hash, so a second run embeds no list again; an image whose row is
current is not looked at again, and no model is loaded when no image needs one. A row
that differs from what was generated for it is a hand edit and is kept (``--force``
redoes every row); a generated row whose image or settings changed is made again.

torch and transformers are imported only when a model is loaded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from artwalk.config import setting
from artwalk.errors import ConfigError, InputError, WeightsMissingError, first_line
from artwalk.fsutil import atomic_write_bytes, check_writable, sha256_file
from artwalk.images import IMAGE_EXTENSIONS, list_images, load_image, to_uint8
from artwalk.models import cache_dir, hub_missing, model_source
from artwalk.progress import drawing, progress as progress_bar
from artwalk.runfolder import folder_lock
from artwalk.weights import refused_by_weights_only
from artwalk.prompts import DESC, comment_lines, prompt_for, read_prompts_csv

log = logging.getLogger(__name__)

VERSION = 1  # bump when the same models and settings would give other prompts
MODES = ("classic", "fast", "best", "caption")
TARGETS = ("sd1", "sd2")
CLIP_FOR = {"sd1": "clip-vit-l-14", "sd2": "clip-vit-h-14"}
DEFAULT_CAPTION = "blip-large"
LISTS = ("mediums", "movements", "artists", "flavors", "trending")
PREFIX = {"artists": "by "}  # how a list's phrase stands in a prompt (and is ranked)
CLASSIC_FLAVORS = 3
FAST_PHRASES = 32
BEST_POOL = 64
BEST_STEPS = 32
TEXT_BATCH = 64
DECODE = (384, 384)  # images are decoded to no less than twice this (BLIP sees 384, CLIP 224)
# BLIP-large's well-known stray words at the start of a caption ("arafed woman ...").
_BLIP_JUNK = re.compile(r"^there (is|are)\s+|\b(araf+e?d?|araffe|arrafed)\b\s*", re.IGNORECASE)
_FORBIDDEN = set(',:|#\\()[]{}"\t')


@dataclass(frozen=True)
class InterrogateConfig:
    folder: Path | None = setting(None, "folder of images (natural order; other files are skipped)", cli=False)
    out: Path | None = setting(None, f"the CSV to write (default FOLDER/{DESC})", metavar="CSV")
    mode: str = setting("classic", "classic (caption, medium, artist, trending, movement, flavours), fast "
                        "(caption + best-ranked phrases), best (greedy chain; slowest) or caption (BLIP alone)",
                        choices=MODES)
    max_tokens: int = setting(75, "most tokens in a prompt, counted by the target model's tokenizer, cut at phrase "
                              "boundaries; 0: no limit (prompt walks chunk long prompts)", metavar="N")
    target: str = setting("sd1", "the diffusion model the prompts are for: sd1 ranks with CLIP ViT-L/14 (SD 1.x's "
                          "text encoder), sd2 with OpenCLIP ViT-H/14 (SD 2.x's, and unclip's)", flags=("--for",),
                          choices=TARGETS)
    caption_model: str | None = setting(None, f"BLIP captioning model: registry name, hub id or folder (default "
                                        f"{DEFAULT_CAPTION}; blip-base for small machines)", metavar="NAME|ID|DIR")
    clip_model: str | None = setting(None, "CLIP model that ranks the phrases (default: clip-vit-l-14 for sd1, "
                                     "clip-vit-h-14 for sd2)", metavar="NAME|ID|DIR")
    tokenizer: str | None = setting(None, "count tokens with this model's tokenizer: a diffusers pipeline (its "
                                    "tokenizer/) or a transformers folder, name or hub id (default: the CLIP "
                                    "model's, which SD 1.x and 2.x share)", metavar="NAME|ID|DIR")
    caption_length: int = setting(32, "most tokens BLIP writes in a caption", metavar="N")
    device: str | None = setting(None, "auto (cuda when there, else cpu), cpu, cuda, cuda:1, ...")
    dtype: str | None = setting(None, "auto (float16 on cuda, float32 on cpu), float32, float16, bfloat16",
                                choices=("auto", "float32", "float16", "bfloat16"))
    force: bool = setting(False, "make every row again, hand edits included", control=True)
    only_new: bool = setting(False, "make rows only for images that have none, or whose file changed; keep rows made "
                             "with other settings (what a walk's --interrogate does)", control=True)
    wait: bool = setting(False, "if another process writes the CSV, wait for it instead of stopping", control=True)
    progress: bool = setting(True, cli=False, key=False)

    @property
    def csv_path(self) -> Path:
        return Path(self.out) if self.out is not None else Path(self.folder) / DESC

    @property
    def caption_name(self) -> str:
        return self.caption_model or DEFAULT_CAPTION

    @property
    def clip_name(self) -> str:
        return self.clip_model or CLIP_FOR[self.target]

    def check(self) -> None:
        if self.folder is None:
            raise ConfigError("give the FOLDER of images")
        if self.mode not in MODES:
            raise ConfigError(f"--mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.target not in TARGETS:
            raise ConfigError(f"--for {self.target!r}: choose one of {', '.join(TARGETS)}")
        if self.max_tokens < 0:
            raise ConfigError(f"--max-tokens {self.max_tokens}: give 0 (no limit) or more")
        if not 1 <= self.caption_length <= 512:
            raise ConfigError(f"--caption-length {self.caption_length}: give 1 to 512")
        for flag, value in (("--caption-model", self.caption_model), ("--clip-model", self.clip_model),
                            ("--tokenizer", self.tokenizer)):
            if value is not None and not value.strip():
                raise ConfigError(f"{flag} is empty: give a registry name, hub id or folder")
        if self.mode == "caption" and self.clip_model is not None:
            raise ConfigError("--clip-model ranks phrases, which --mode caption does not use: drop one")


@dataclass(frozen=True)
class InterrogateResult:
    csv: Path
    rows: int  # rows in the CSV, one per image
    made: int  # rows made by this run
    kept: int  # rows kept as they were (current, or hand-edited)
    edited: int  # of those, hand edits
    seconds: float


# ---------------------------------------------------------------------------------------------
# The phrase lists

@lru_cache(maxsize=1)
def phrase_lists() -> dict[str, tuple[str, ...]]:
    """The shipped lists, {name: phrases as they stand in a prompt} ("by " before an artist)."""
    folder = resources.files("pipeline") / "phrases" / "interrogate"
    lists = {}
    for name in LISTS:
        where = folder / f"{name}.txt"
        try:
            text = where.read_text("utf-8")
        except OSError as exc:
            raise InputError(f"{where}: cannot read the phrase list ({exc.strerror or exc}); reinstall artwalk") \
                from None
        phrases = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.lstrip().startswith("#"):
                continue
            phrase = " ".join(line.split())
            if not phrase:
                continue
            if _FORBIDDEN & set(phrase) or "--" in phrase:
                raise InputError(f"{where}, line {number}: {phrase!r} has a character a prompt part cannot hold")
            phrases.append(PREFIX.get(name, "") + phrase)
        if not phrases:
            raise InputError(f"{where}: has no phrases")
        lists[name] = tuple(dict.fromkeys(phrases))
    return lists


def list_hash(phrases: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(phrases).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Models: from this machine only, with one line when missing

def folder_identity(folder: Path) -> str:
    """A hash of a model folder's files, cheap to take: a hub snapshot's files link to blobs
    named by their content hash; other small files are hashed, large ones go by size and
    modification time."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            what = path.resolve().name
        elif path.stat().st_size < 1 << 20:
            what = sha256_file(path)
        else:
            st = path.stat()
            what = f"{st.st_size}:{st.st_mtime_ns}"
        digest.update(f"{name}\0{what}\n".encode("utf-8"))
    return digest.hexdigest()


def model_folder(model: str, what: str, subfolder: str | None = None) -> Path:
    """The local folder of a transformers model (a registry name, hub id or folder), with
    ``config.json`` or tokenizer files in it; :class:`WeightsMissingError` (one line, naming
    ``artwalk models download NAME``) when it is not on this machine. Loads nothing."""
    source, local = model_source(model)
    if local:
        folder = Path(source)
    elif "/" not in source:
        raise ConfigError(f"{what} {model!r}: not a registry name (see `artwalk models list`), a hub id "
                          "(owner/name) or a folder")
    else:
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise hub_missing(model) from None
        try:
            folder = Path(snapshot_download(source, local_files_only=True))
        except ValueError:
            raise ConfigError(f"{what} {model!r} is neither a folder nor a hub id (owner/name)") from None
        except Exception:  # LocalEntryNotFoundError and the like: not in the cache
            raise hub_missing(model) from None
    if subfolder is not None and (folder / subfolder).is_dir():
        folder = folder / subfolder
    return folder


def _check_model_folder(folder: Path, model: str, what: str, local: bool, model_type: str) -> None:
    """A transformers folder with config.json of ``model_type`` and weights; else one line."""
    if not (folder / "config.json").is_file():
        if local:
            raise WeightsMissingError(f"{folder}: not a transformers model folder for the {what} (no config.json)")
        raise hub_missing(model)
    try:
        found = json.loads((folder / "config.json").read_text("utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise InputError(f"{folder / 'config.json'}: unreadable or not JSON") from None
    if found != model_type:
        raise ConfigError(f"{folder}: a {found or 'unknown'} model, not a {model_type} one: the {what} must be a "
                          f"{model_type.upper()} model")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
        if local:
            raise WeightsMissingError(f"{folder}: the {what} has no weights (no *.safetensors)")
        raise hub_missing(model)


def vocabulary_identity(folder: Path) -> str:
    """A hash of a tokenizer's vocabulary: vocab.json and merges.txt (BPE), else
    tokenizer.json, else vocab.txt (WordPiece)."""
    for names in (("vocab.json", "merges.txt"), ("tokenizer.json",), ("vocab.txt",)):
        if all((folder / n).is_file() for n in names):
            return hashlib.sha256(b"".join(bytes.fromhex(sha256_file(folder / n)) for n in names)).hexdigest()
    return folder_identity(folder)


def tokenizer_folder(model: str) -> Path:
    """Where the target model's tokenizer is: a diffusers pipeline's ``tokenizer/`` (a
    Kandinsky prior's too), else the folder itself."""
    folder = model_folder(model, "--tokenizer", subfolder="tokenizer")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json", "vocab.txt",
                                                      "tokenizer_config.json")):
        raise WeightsMissingError(f"{folder}: no tokenizer files here (tokenizer.json or vocab.json); give a "
                                  "diffusers pipeline, or a folder with a tokenizer, to --tokenizer")
    return folder


def _loaded(what: str, folder: Path, load, progress: bool = True):
    """``load()``, with transformers' loading errors as one line naming the folder (and its
    loading bars only when ``progress``)."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:
        raise ConfigError("artwalk interrogate needs transformers and torch: pip install -r "
                          "requirements/keyframes.txt") from None
    verbosity, bars = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()  # "requires torchvision; falling back to PIL" is not the user's concern
    if not (progress and drawing()):
        tlog.disable_progress_bar()
    try:
        return load()
    except Exception as exc:  # torn weights, a wrong architecture, ...: transformers raises many kinds
        if type(exc).__name__ == "OutOfMemoryError":
            raise
        raise InputError(f"{folder}: cannot load the {what} ({refused_by_weights_only(exc) or first_line(exc)})") \
            from None
    finally:
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()


class Models:
    """BLIP, CLIP and the counting tokenizer, each loaded once, on first use."""

    def __init__(self, config: InterrogateConfig) -> None:
        self.config = config
        self.caption_dir = model_folder(config.caption_name, "--caption-model")
        _check_model_folder(self.caption_dir, config.caption_name, "caption model",
                            model_source(config.caption_name)[1], "blip")
        self.clip_dir = None
        if config.mode != "caption":
            self.clip_dir = model_folder(config.clip_name, "--clip-model")
            _check_model_folder(self.clip_dir, config.clip_name, "CLIP model", model_source(config.clip_name)[1],
                                "clip")
        if config.tokenizer is not None:
            self.tokenizer_dir = tokenizer_folder(config.tokenizer)
        elif self.clip_dir is not None:
            self.tokenizer_dir = self.clip_dir
        else:  # caption mode: the CLIP model's tokenizer when it is here, else BLIP's own
            try:
                self.tokenizer_dir = tokenizer_folder(config.clip_name)
            except WeightsMissingError:
                log.info("interrogate: counting tokens with the caption model's tokenizer (%s is not here; "
                         "--tokenizer names the target model's)", config.clip_name)
                self.tokenizer_dir = self.caption_dir
        self._blip = self._clip = self._tokenizer = None
        self._device = self._dtype = None

    def identity(self) -> dict:
        """What the rows depend on, besides the settings: the models' files, and the
        tokenizer's vocabulary (SD 1.5's tokenizer/ and CLIP ViT-L/14's count alike)."""
        return {"caption": folder_identity(self.caption_dir),
                "clip": None if self.clip_dir is None else folder_identity(self.clip_dir),
                "tokenizer": vocabulary_identity(self.tokenizer_dir)}

    def check_device(self) -> None:
        self._place()

    def _place(self):
        if self._device is None:
            from artwalk.devices import resolve_device, resolve_dtype

            self._device = resolve_device(self.config.device)
            self._dtype = resolve_dtype(self.config.dtype, self._device)
        return self._device, self._dtype

    @property
    def blip(self):
        if self._blip is None:
            device, dtype = self._place()

            def load():
                from transformers import AutoImageProcessor, AutoTokenizer, BlipForConditionalGeneration

                log.info("interrogate: loading the caption model %s", self.caption_dir)
                model = BlipForConditionalGeneration.from_pretrained(self.caption_dir, local_files_only=True,
                                                                     dtype=dtype)
                images = AutoImageProcessor.from_pretrained(self.caption_dir, local_files_only=True, backend="pil")
                words = AutoTokenizer.from_pretrained(self.caption_dir, local_files_only=True)
                return model.to(device).eval(), images, words

            self._blip = _loaded("caption model", self.caption_dir, load, self.config.progress)
        return self._blip

    @property
    def clip(self):
        if self._clip is None:
            device, dtype = self._place()

            def load():
                from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

                log.info("interrogate: loading the CLIP model %s", self.clip_dir)
                model = CLIPModel.from_pretrained(self.clip_dir, local_files_only=True, dtype=dtype)
                images = AutoImageProcessor.from_pretrained(self.clip_dir, local_files_only=True, backend="pil")
                words = AutoTokenizer.from_pretrained(self.clip_dir, local_files_only=True)
                return model.to(device).eval(), images, words

            self._clip = _loaded("CLIP model", self.clip_dir, load, self.config.progress)
        return self._clip

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            def load():
                from transformers import AutoTokenizer

                return AutoTokenizer.from_pretrained(self.tokenizer_dir, local_files_only=True)

            self._tokenizer = _loaded("tokenizer", self.tokenizer_dir, load, self.config.progress)
        return self._tokenizer

    # --- inference -------------------------------------------------------------------------

    def caption(self, image) -> str:
        """BLIP's caption of a PIL image, greedy (deterministic), tidied."""
        import torch

        model, images, words = self.blip
        device, dtype = self._place()
        pixels = images(images=image, return_tensors="pt")["pixel_values"].to(device, dtype)
        with torch.inference_mode():
            out = model.generate(pixel_values=pixels, do_sample=False, num_beams=1,
                                 max_new_tokens=self.config.caption_length)
        return clean_caption(words.decode(out[0], skip_special_tokens=True))

    def image_features(self, image):
        """The image's CLIP embedding, projected and normalised (float32, CPU)."""
        import torch

        model, images, _ = self.clip
        device, dtype = self._place()
        pixels = images(images=image, return_tensors="pt")["pixel_values"].to(device, dtype)
        with torch.inference_mode():
            feats = _features(model.get_image_features(pixel_values=pixels))
        return torch.nn.functional.normalize(feats.float().cpu(), dim=-1)[0]

    def text_features(self, texts: list[str], *, progress: bool = False, desc: str = "embedding"):
        """Each text's CLIP embedding, projected and normalised (float32, CPU), in batches."""
        import torch

        model, _, words = self.clip
        device, _ = self._place()
        room = min(getattr(words, "model_max_length", 77), model.config.text_config.max_position_embeddings)
        chunks = []
        starts = range(0, len(texts), TEXT_BATCH)
        for start in progress_bar(starts, desc=desc, enabled=progress and len(starts) > 1, leave=False):
            batch = words(texts[start:start + TEXT_BATCH], padding=True, truncation=True, max_length=room,
                          return_tensors="pt")
            with torch.inference_mode():
                feats = _features(model.get_text_features(input_ids=batch["input_ids"].to(device),
                                                          attention_mask=batch["attention_mask"].to(device)))
            chunks.append(torch.nn.functional.normalize(feats.float().cpu(), dim=-1))
        return torch.cat(chunks) if chunks else torch.zeros(0)

    def count(self, text: str) -> int:
        """Tokens of ``text`` by the target tokenizer, without its start and end tokens."""
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _features(out):
    """transformers 5 returns a model output whose pooler_output is the projection; 4 a tensor."""
    return out if hasattr(out, "shape") else out.pooler_output


def clean_caption(text: str) -> str:
    """One tidy line: BLIP's stray words out, no control characters, single spaces."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    text = " ".join(_BLIP_JUNK.sub("", text).split())
    return text.strip(" ,")


# ---------------------------------------------------------------------------------------------
# Phrase embeddings, cached on disk

class Tables:
    """The phrase lists' CLIP embeddings, loaded from the cache or made once and stored."""

    def __init__(self, models: Models, clip_identity: str, progress: bool) -> None:
        self.models, self.clip_identity, self.progress = models, clip_identity, progress
        self._tables: dict[str, object] = {}
        self.embedded: list[str] = []  # lists this process had to embed (not found in the cache)

    def path(self, name: str) -> Path:
        key = hashlib.sha256(json.dumps([VERSION, self.clip_identity, name, list_hash(phrase_lists()[name])])
                             .encode("utf-8")).hexdigest()[:32]
        return cache_dir() / "interrogate" / f"{name}-{key}.safetensors"

    def get(self, name: str):
        if name not in self._tables:
            from safetensors.torch import load_file

            phrases = phrase_lists()[name]
            path = self.path(name)
            table = None
            if path.is_file():
                try:
                    table = load_file(path)["embeddings"]
                except Exception as exc:  # a torn or foreign file: make it again
                    log.warning("%s: unreadable phrase cache (%s); embedding %s again", path, first_line(exc), name)
                if table is not None and table.shape[0] != len(phrases):
                    table = None
            if table is None:
                table = self.models.text_features(list(phrases), progress=self.progress, desc=f"embedding {name}")
                self._store(path, table, name, len(phrases))
                self.embedded.append(name)
            self._tables[name] = table
        return self._tables[name]

    def _store(self, path: Path, table, name: str, count: int) -> None:
        """Write the cache file atomically; a cache that cannot be written only costs time."""
        from safetensors.torch import save_file

        part = path.with_name(path.name + ".part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({"embeddings": table.contiguous()}, str(part), metadata={"list": name, "phrases": str(count)})
            part.replace(path)
        except Exception as exc:  # OSError, or safetensors' own error for the same causes
            log.warning("warning: cannot store the phrase cache in %s (%s): the next run embeds %s again; set "
                        "ARTWALK_CACHE to a writable folder", path.parent, first_line(exc), name)
            try:
                part.unlink(missing_ok=True)
            except OSError:
                pass

    def rank(self, image, names: tuple[str, ...] | str, top: int) -> list[tuple[str, float]]:
        """The ``top`` phrases of the lists ``names`` most similar to ``image``, best first
        (ties keep list order)."""
        import torch

        names = (names,) if isinstance(names, str) else names
        phrases = [p for n in names for p in phrase_lists()[n]]
        scores = torch.cat([self.get(n) for n in names]) @ image
        order = sorted(range(len(phrases)), key=lambda i: (-float(scores[i]), i))
        seen, best = set(), []
        for i in order:
            if phrases[i] not in seen:
                seen.add(phrases[i])
                best.append((phrases[i], float(scores[i])))
            if len(best) == top:
                break
        return best


# ---------------------------------------------------------------------------------------------
# Prompts

def fit(parts: list[str], count, limit: int) -> str:
    """``parts`` joined by ", ", as many as fit in ``limit`` tokens (0: all), in order. A first
    part that alone is too long is cut at a word boundary."""
    parts = [p for p in parts if p]
    if not parts:
        return ""
    if limit == 0:
        return ", ".join(parts)
    words = parts[0].split()
    prompt = " ".join(words)
    if count(prompt) > limit:
        while words and count(" ".join(words)) > limit:
            words.pop()
        if not words:
            first = parts[0].split()[0]
            raise ConfigError(f"--max-tokens {limit}: the caption's first word {first!r} alone takes more tokens; "
                              "raise it")
        return " ".join(words)
    for part in parts[1:]:
        longer = f"{prompt}, {part}"
        if count(longer) > limit:
            break
        prompt = longer
    return prompt


def classic_parts(caption: str, tables: Tables, image) -> list[str]:
    top = lambda name, n=1: [p for p, _ in tables.rank(image, name, n)]  # noqa: E731
    return [caption, *top("mediums"), *top("artists"), *top("trending"), *top("movements"),
            *top("flavors", CLASSIC_FLAVORS)]


def fast_parts(caption: str, tables: Tables, image) -> list[str]:
    return [caption, *[p for p, _ in tables.rank(image, LISTS, FAST_PHRASES)]]


def best_prompt(caption: str, tables: Tables, image, models: Models, limit: int) -> str:
    """The greedy chain from the caption, or classic, fast or the caption if one scores higher."""
    similarity = lambda texts: (models.text_features(texts) @ image).tolist()  # noqa: E731
    chain = fit([caption], models.count, limit)
    score = similarity([chain])[0]
    pool = [p for p, _ in tables.rank(image, LISTS, BEST_POOL)]
    for _ in range(BEST_STEPS):
        tries = [f"{chain}, {p}" for p in pool]
        fits = [i for i, t in enumerate(tries) if limit == 0 or models.count(t) <= limit]
        if not fits:
            break
        scores = similarity([tries[i] for i in fits])
        at = max(range(len(fits)), key=lambda j: (scores[j], -j))
        if scores[at] <= score:
            break
        chain, score = tries[fits[at]], scores[at]
        del pool[fits[at]]
    candidates = list(dict.fromkeys([chain, fit(classic_parts(caption, tables, image), models.count, limit),
                                     fit(fast_parts(caption, tables, image), models.count, limit),
                                     fit([caption], models.count, limit)]))
    scores = similarity(candidates)
    return candidates[max(range(len(candidates)), key=lambda i: (scores[i], -i))]


def make_prompt(image, config: InterrogateConfig, models: Models, tables: Tables | None) -> str:
    """The prompt for one PIL image in ``config.mode``."""
    caption = models.caption(image)
    if not caption:
        caption = "an image"  # a random or broken caption model can emit only special tokens
    limit = config.max_tokens
    if config.mode == "caption":
        return fit([caption], models.count, limit)
    features = models.image_features(image)
    if config.mode == "classic":
        return fit(classic_parts(caption, tables, features), models.count, limit)
    if config.mode == "fast":
        return fit(fast_parts(caption, tables, features), models.count, limit)
    return best_prompt(caption, tables, features, models, limit)


# ---------------------------------------------------------------------------------------------
# desc.csv and what each row was made from

def record_path(csv_path: Path) -> Path:
    return csv_path.with_name(f".{csv_path.name}.artwalk.json")


def read_rows(csv_path: Path) -> dict[str, str]:
    """The rows already in the CSV ({} when there is none yet)."""
    if not csv_path.exists():
        return {}
    if csv_path.is_dir():
        raise InputError(f"{csv_path}: is a folder; give a file path for the CSV")
    return read_prompts_csv(csv_path, allow_empty=True)


def read_record(csv_path: Path) -> dict[str, dict] | None:
    """What each row was made from ({} for a new CSV; None when the CSV has rows but its
    record is missing or unreadable, so no row can be told from a hand edit)."""
    try:
        data = json.loads(record_path(csv_path).read_text("utf-8"))
    except FileNotFoundError:
        return {} if not csv_path.exists() else None
    except (OSError, ValueError):
        return None
    rows = data.get("rows") if isinstance(data, dict) else None
    return rows if isinstance(rows, dict) else None


def csv_bytes(rows: list[tuple[str, str]], comments: list[str] = ()) -> bytes:
    """``image,prompt`` with a header, utf-8; every field of a row quoted, so a name that starts
    with ``#`` or a space reads back as written. ``comments`` (``#`` lines) go first."""
    buffer = io.StringIO()
    buffer.writelines(line + "\n" for line in comments)
    csv.writer(buffer, lineterminator="\n").writerow(["image", "prompt"])
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(rows)
    return buffer.getvalue().encode("utf-8")


@dataclass
class _Row:
    image: Path
    sha256: str
    prompt: str | None  # in the CSV now
    made: dict | None  # what this tool wrote for it last time
    redo: bool = False

    @property
    def generated(self) -> bool:
        """Whether the row is what this tool wrote (not a hand edit)."""
        return self.made is not None and self.prompt is not None and self.made.get("prompt") == self.prompt


def plain_settings(config: InterrogateConfig) -> dict:
    """The settings as the user gave them: known without any model."""
    return {"version": VERSION, "mode": config.mode, "max_tokens": config.max_tokens,
            "caption_length": config.caption_length, "caption": config.caption_name,
            "clip": None if config.mode == "caption" else config.clip_name, "tokenizer": config.tokenizer}


def plan_rows(config: InterrogateConfig, images: list[Path], rows: dict[str, str], record: dict,
              key: str | None) -> list[_Row]:
    """Which rows to make: a missing row; a generated row whose image changed, or (unless
    ``only_new``) whose settings changed: ``key`` (the settings and the models' files), or
    without the models the settings as given; ``--force``: every row."""
    plain = plain_settings(config)
    plan = []
    for path in images:
        made = record.get(path.name)
        row = _Row(path, sha256_file(path), _row_of(rows, path), made if isinstance(made, dict) else None)
        changed = None
        if row.made is not None:
            if row.made.get("sha256") != row.sha256:
                changed = "image"
            elif not config.only_new and (row.made.get("settings") != plain or
                                          (key is not None and row.made.get("key") != key)):
                changed = "settings"
        if config.force or row.prompt is None:
            row.redo = True
        elif row.generated:
            row.redo = changed is not None
        elif changed is not None:
            log.warning("%s: keeping the hand-edited row of %s though its %s changed (--force makes it again)",
                        config.csv_path, path.name, changed)
        if path.stem in rows and path.name in rows and rows[path.stem] != rows[path.name]:
            log.warning("warning: %s: the row %r gives way to the row of %s (a row by file name wins over one by "
                        "stem)", config.csv_path, path.stem, path.name)
        plan.append(row)
    return plan


def _row_of(rows: dict[str, str], image: Path) -> str | None:
    """The image's row, by its file name, else by its stem (as the stage looks it up)."""
    return prompt_for(image.name, rows, None)


def settings_key(config: InterrogateConfig, identity: dict) -> str:
    lists = {name: list_hash(p) for name, p in phrase_lists().items()} if config.mode != "caption" else None
    return hashlib.sha256(json.dumps({**plain_settings(config), "models": identity, "lists": lists},
                                     sort_keys=True).encode("utf-8")).hexdigest()


def check(config: InterrogateConfig) -> tuple[list[Path], dict[str, str]]:
    """Every check that needs no model: the settings, the folder, the CSV's path and rows."""
    config.check()
    images = list_images(config.folder)
    csv_path = config.csv_path
    if csv_path.suffix.lower() in IMAGE_EXTENSIONS:
        raise ConfigError(f"--out {csv_path}: would overwrite an image; give a .csv path")
    if csv_path.exists() and not csv_path.is_file() and not csv_path.is_dir():
        raise InputError(f"{csv_path}: not a regular file; give a file path for the CSV")
    check_writable(csv_path.parent, "folder of the CSV")
    return images, read_rows(csv_path)


def _todo(config: InterrogateConfig, images: list[Path], rows: dict[str, str], record: dict | None):
    """(models or None, the settings key or None, the plan): the models are found (one line
    when one is missing) unless every row can be kept without them."""
    if record is None:
        if rows:
            log.warning("warning: %s: no record of how its rows were made (%s is missing or unreadable), so "
                        "every row is kept as if written by hand; --force makes them all again",
                        config.csv_path, record_path(config.csv_path).name)
        record = {}
    try:
        models = Models(config)  # finds the models; loads nothing yet
        key = settings_key(config, models.identity())
        return models, key, plan_rows(config, images, rows, record, key)
    except WeightsMissingError:
        plan = plan_rows(config, images, rows, record, None)
        if any(r.redo for r in plan):
            raise
        log.info("interrogate: every row of %s is current; the models are not here, so the rows are not "
                 "checked against their files", config.csv_path)
        return None, None, plan


def check_ready(config: InterrogateConfig) -> None:
    """What a walk checks before its work: the settings, the folder, the CSV and, when a row
    must be made, the models and the device."""
    images, rows = check(config)
    models, _, plan = _todo(config, images, rows, read_record(config.csv_path))
    if models is not None and any(r.redo for r in plan):
        models.check_device()


def interrogate(config: InterrogateConfig) -> InterrogateResult:
    """Bring ``config.csv_path`` up to date: a row per image, made only where needed."""
    start = time.monotonic()
    images, _ = check(config)
    csv_path = config.csv_path
    with folder_lock(csv_path.parent, csv_path, config.wait):  # no lock file left in the user's folder
        rows, record = read_rows(csv_path), read_record(csv_path)  # again, under the lock
        disk = _Disk(csv_path)
        models, key, plan = _todo(config, images, rows, record)
        record = record or {}
        todo = [r for r in plan if r.redo]
        if todo:  # what can fail fast fails before any image is decoded or model loaded
            models.check_device()
            models.tokenizer
        for row in progress_bar(todo, desc="checking images", enabled=config.progress and len(todo) > 1,
                                leave=False):
            load_image(row.image, min_size=DECODE)  # every image decodes before a model loads
        tables = Tables(models, models.identity()["clip"], config.progress) \
            if todo and config.mode != "caption" else None
        from PIL import Image

        for row in progress_bar(todo, desc="interrogate", enabled=config.progress and len(todo) > 1):
            picture = Image.fromarray(to_uint8(load_image(row.image, min_size=DECODE)))
            row.prompt = make_prompt(picture, config, models, tables)
            row.made = {"sha256": row.sha256, "key": key, "settings": plain_settings(config), "prompt": row.prompt}
            log.info("%s: %s", row.image.name, row.prompt)
            disk.write(plan, rows, record)  # after each image: a killed run resumes here
        if not todo and _lines(plan, rows, record) != list(rows.items()):
            disk.write(plan, rows, record)  # rows out of order, or of images that are gone
    edited = sum(1 for r in plan if not r.redo and not r.generated)
    result = InterrogateResult(csv_path, len(plan), len(todo), len(plan) - len(todo), edited,
                               time.monotonic() - start)
    if tables is not None and tables.embedded:
        log.info("interrogate: embedded the phrase lists %s (cached for the next run)", ", ".join(tables.embedded))
    log.info("interrogate: %s: %d row(s), %d made, %d kept%s", csv_path, result.rows, result.made, result.kept,
             f" ({result.edited} written by hand)" if result.edited else "")
    return result


def _lines(plan: list[_Row], rows: dict[str, str], record: dict) -> list[tuple[str, str]]:
    """The CSV's rows: one per image in the folder's order, then the rows of images no longer
    there that were written by hand (a generated row of a gone image goes)."""
    names = {r.image.name for r in plan} | {r.image.stem for r in plan}
    lines = [(r.image.name, r.prompt) for r in plan if r.prompt is not None]
    for name, prompt in rows.items():
        made = record.get(name)
        if name not in names and not (isinstance(made, dict) and made.get("prompt") == prompt):
            lines.append((name, prompt))
    return lines


class _Disk:
    """The CSV as this run last saw it: a rewrite never replaces a file someone changed since
    (a text editor open on it during a long run); it stops with one line instead."""

    def __init__(self, csv_path: Path) -> None:
        self.path = csv_path
        self.comments = comment_lines(csv_path)
        self.sha256 = self._sha()

    def _sha(self) -> str | None:
        return sha256_file(self.path) if self.path.is_file() else None

    def write(self, plan: list[_Row], rows: dict[str, str], record: dict) -> None:
        """The CSV, then its record, each replaced atomically. A kill between the two leaves
        a new row the record does not know yet: it is current, and kept as if hand-written."""
        if self._sha() != self.sha256:
            raise InputError(f"{self.path}: changed by someone else while this run was making rows; stopped "
                             "without writing over it: rerun to make the rest (your edits are kept)")
        data = csv_bytes(_lines(plan, rows, record), self.comments)
        atomic_write_bytes(self.path, data)
        self.sha256 = hashlib.sha256(data).hexdigest()
        made = {r.image.name: r.made for r in plan if r.made is not None}
        atomic_write_bytes(record_path(self.path), json.dumps({"version": VERSION, "rows": made}, indent=1,
                                                              ensure_ascii=False).encode("utf-8"))


def target_of(model: str | None, engine: str) -> str:
    """``sd1`` or ``sd2``: the family of a keyframe engine's model (unclip is SD 2.1; an SD
    pipeline whose text encoder is 1024 wide is SD 2.x), to rank with its text encoder's CLIP."""
    if engine == "unclip":
        return "sd2"
    if model is None:
        return "sd1"
    try:
        folder = model_folder(model, "--model", subfolder="text_encoder")
        width = json.loads((folder / "config.json").read_text("utf-8")).get("hidden_size")
    except (WeightsMissingError, ConfigError, OSError, ValueError):
        return "sd1"
    return "sd2" if width == 1024 else "sd1"


def schedule_from_desc(folder: Path, every: str = "2s", csv_path: Path | None = None) -> tuple[str, int]:
    """(schedule text, keyframes): one ``KEY: prompt`` line per image of ``folder``, in the
    walk's order, ``every`` apart (``2s`` or frames), the prompt its row of desc.csv made
    safe for a schedule line. Every image needs a row."""
    from pipeline.inspire import clean_prompt, schedule_text

    images = list_images(folder)
    csv_path = Path(csv_path) if csv_path is not None else Path(folder) / DESC
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: not there; write it with `artwalk interrogate {folder}` (or by hand: "
                         "image,prompt rows)")
    rows = read_prompts_csv(csv_path)
    missing = [p.name for p in images if _row_of(rows, p) is None]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(f"{csv_path}: no prompt for {missing[0]}{more}; run `artwalk interrogate {folder}` to add "
                         "the missing rows")
    prompts = []
    for path in images:
        row = _row_of(rows, path)
        prompt = clean_prompt(row)
        if not prompt:
            raise InputError(f"{csv_path}: the prompt of {path.name} is empty: write one, or delete its row and "
                             f"run `artwalk interrogate {folder}`")
        if prompt != " ".join(row.split()):
            log.warning("warning: %s: the prompt of %s changed to fit a schedule line: %r", csv_path, path.name,
                        prompt)
        prompts.append(prompt)
    return schedule_text(prompts, every), len(prompts)

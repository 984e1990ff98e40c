"""Prompt schedules from a topic: ``artwalk inspire``'s library (prompts, not keyframes: a prompt
walk renders the schedule it writes).

::

    TOPIC words ("a lighthouse")            schedule text (stdout or --out FILE)
    pipeline/phrases/               0s: a lighthouse, linocut print, art nouveau, ...
      subjects.txt  mediums.txt   --->      2s: a lighthouse, gouache painting, ...
      styles.txt    light.txt               4s: ...
      palettes.txt                          (one ``FRAME: prompt`` line per prompt)
    [MagicPrompt GPT-2 weights]

Two engines behind one call, :func:`inspire`:

- ``phrases`` (no weights): a ``random.Random(seed)`` draws a medium, a style, a light
  and a palette from the shipped phrase lists for each prompt: ``TOPIC, MEDIUM, STYLE,
  LIGHT, PALETTE``. Each list is dealt like a shuffled deck, so consecutive prompts
  never share a part and a part comes back only once its list has run out; no prompt
  repeats within a run. Without a topic each prompt gets a subject from subjects.txt.
- ``magicprompt``: a GPT-2 prompt generator (registry name ``magicprompt``, MIT) continues
  the topic (or a drawn subject) by sampling, seeded per prompt (``seed + i``) on a forked
  torch RNG, so the global RNG is left as it was. A continuation that cleans to nothing
  (or repeats an earlier prompt) is replaced by the phrase-list parts, with a debug line.
- ``auto`` picks ``magicprompt`` when its weights are on this machine, else ``phrases``,
  and logs one line saying which and why.

Every prompt is cleaned for the schedule format (``FRAME: text`` lines): one line,
``:`` becomes `` -``, ``|`` becomes ``,``, ``#``, backslashes and control characters
go, ``--neg`` never appears, and it has at most ``max_words`` words (the phrase engine
leaves out the parts that do not fit rather than cut one).
:func:`schedule_text` writes the lines, every ``2s`` (seconds) or every ``48`` (frames).

torch and transformers are imported only inside the MagicPrompt functions.
"""

from __future__ import annotations

import importlib.util
import logging
import random
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path

from artwalk.errors import ConfigError, InputError, WeightsMissingError, first_line
from artwalk.models import hub_missing, model_source
from artwalk.progress import progress as progress_bar
from artwalk.weights import refused_by_weights_only

log = logging.getLogger(__name__)

ENGINES = ("auto", "phrases", "magicprompt")
DEFAULT_MODEL = "magicprompt"
PARTS = ("mediums", "styles", "light", "palettes")  # the order they follow the subject in
LISTS = ("subjects", *PARTS)
MAX_PROMPTS = 1000
MAX_NEW_TOKENS = 60
TOP_K = 50
TOP_P = 0.95
REPETITION_PENALTY = 1.2
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")

_SECONDS = re.compile(r"(\d+(\.\d*)?|\.\d+)s")
_FRAMES = re.compile(r"\d+")
_URL = re.compile(r"\S*(https?://|www\.)\S*", re.IGNORECASE)
_NEG = re.compile(r"--neg", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Cleaning and the schedule

def clean_prompt(text: str, max_words: int | None = None) -> str:
    """``text`` as one schedule-safe prompt line (possibly empty).

    Only the first line is kept; ``:`` becomes `` -``, ``|`` becomes ``,``; ``#``,
    backslashes, links and control characters go; ``--neg`` is removed; spaces and
    commas are tidied; at most ``max_words`` words remain.
    """
    lines = text.splitlines()
    text = lines[0] if lines else ""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    text = text.replace("\ufffd", " ")
    text = _URL.sub(" ", text)
    text = text.replace(":", " -").replace("|", ",").replace("#", "").replace("\\", " ")
    while _NEG.search(text):
        text = _NEG.sub(" ", text)
    words = text.split()
    if max_words is not None:
        words = words[:max_words]
    text = " ".join(words)
    text = re.sub(r"\s*,[\s,]*", ", ", text)  # "a ,, b" -> "a, b"
    return text.strip(" ,-")


def check_prompt(prompt: str) -> None:
    """Raise :class:`ConfigError` unless ``prompt`` can stand on a schedule line as it is."""
    bad = [c for c in ("#", "|", ":", "\\", "\n", "\r") if c in prompt] + (["--neg"] if _NEG.search(prompt) else [])
    if not prompt.strip() or bad:
        why = f"contains {' '.join(repr(c) for c in bad)}" if bad else "is empty"
        raise ConfigError(f"prompt {prompt!r} {why}: it cannot stand on a schedule line")


@dataclass(frozen=True)
class Interval:
    """The step between schedule keys: ``value`` seconds (``seconds``) or frames."""

    value: Decimal
    seconds: bool

    def key(self, i: int) -> str:
        """The key of the ``i``-th line: ``0s``, ``2.5s``, ... or ``0``, ``48``, ..."""
        at = format((self.value * i).normalize(), "f")
        return f"{at}s" if self.seconds else at


def parse_every(every: str) -> Interval:
    """``2s`` / ``2.5s`` (seconds) or ``48`` (frames), positive; else one-line :class:`ConfigError`."""
    text = str(every).strip()
    if _SECONDS.fullmatch(text):
        interval = Interval(Decimal(text[:-1]), True)
    elif _FRAMES.fullmatch(text):
        interval = Interval(Decimal(text), False)
    else:
        raise ConfigError(f"--every {every!r}: give seconds like 2s or 2.5s, or a whole number of frames like 48")
    if interval.value <= 0:
        raise ConfigError(f"--every {every!r}: must be more than 0")
    if interval.seconds and interval.value * 24 < 1:
        raise ConfigError(f"--every {every!r}: under one frame at 24 fps, so prompts would share a frame; give at "
                          "least 1/24 s, or frames (--every 1)")
    return interval


def schedule_text(prompts: list[str], every: str) -> str:
    """The schedule: one ``KEY: prompt`` line per prompt, ``every`` apart from 0, in ``every``'s unit."""
    interval = parse_every(every)
    for prompt in prompts:
        check_prompt(prompt)
    return "".join(f"{interval.key(i)}: {prompt}\n" for i, prompt in enumerate(prompts))


# ---------------------------------------------------------------------------------------------
# The phrase lists

@lru_cache(maxsize=1)
def phrase_lists() -> dict[str, tuple[str, ...]]:
    """The shipped lists, {name: phrases}: one phrase a line, ``#`` starts a comment."""
    folder = resources.files("pipeline") / "phrases"
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
            phrase = " ".join(line.split("#", 1)[0].split())
            if not phrase:
                continue
            if clean_prompt(phrase) != phrase or "," in phrase:
                raise InputError(f"{where}, line {number}: {phrase!r} has a character a prompt part cannot hold")
            phrases.append(phrase)
        if len(set(phrases)) < 2:
            raise InputError(f"{where}: needs at least two different phrases")
        lists[name] = tuple(dict.fromkeys(phrases))
    return lists


class _Deck:
    """Deals a list in shuffled order; reshuffles when dealt out, never repeating the last card."""

    def __init__(self, cards: tuple[str, ...], rng: random.Random) -> None:
        self.cards, self.rng, self.pile, self.last = cards, rng, [], None

    def deal(self) -> str:
        if not self.pile:
            self.pile = list(self.cards)
            self.rng.shuffle(self.pile)
            if self.pile[-1] == self.last:  # the pile is dealt from its end
                self.pile[0], self.pile[-1] = self.pile[-1], self.pile[0]
        self.last = self.pile.pop()
        return self.last


class PhraseDraw:
    """Seeded draws over the phrase lists: subjects and (medium, style, light, palette)."""

    def __init__(self, rng: random.Random) -> None:
        self.decks = {name: _Deck(cards, rng) for name, cards in phrase_lists().items()}

    def subject(self, max_words: int | None = None) -> str:
        """A drawn subject of at most ``max_words`` words (a subject is never cut)."""
        deck = self.decks["subjects"]
        for _ in range(len(deck.cards)):
            subject = deck.deal()
            if max_words is None or len(subject.split()) <= max_words:
                return subject
        raise ConfigError(f"--max-words {max_words} is shorter than every subject in the phrase list: raise it, or "
                          "give a TOPIC")

    def compose(self, subject: str, max_words: int | None = None) -> str:
        """``subject, medium, style, light, palette``; with ``max_words``, only the whole parts
        that fit (in that order) after the whole subject."""
        words = subject.split()
        chosen = [" ".join(words)]
        for name in PARTS:
            part = self.decks[name].deal()
            if max_words is None or len(words) + len(part.split()) <= max_words:
                chosen.append(part)
                words += part.split()
        return ", ".join(chosen)


# ---------------------------------------------------------------------------------------------
# MagicPrompt

def check_magicprompt(model: str | None = None) -> str:
    """The hub id or folder of the prompt model; :class:`WeightsMissingError` (one line,
    with the fetch command) unless its weights are on this machine. Loads nothing."""
    model = model or DEFAULT_MODEL
    source, local = model_source(model)
    if local:
        folder = Path(source)
        if not (folder / "config.json").is_file():
            raise WeightsMissingError(f"{folder}: not a transformers model folder (no config.json)")
        return source
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise hub_missing(model) from None
    try:
        here = [isinstance(try_to_load_from_cache(source, name), str) for name in ("config.json", *WEIGHT_FILES)]
    except ValueError:  # not a valid repo id
        raise ConfigError(f"--model {model!r} is neither a folder nor a hub id (owner/name)") from None
    if not (here[0] and any(here[1:])):
        raise hub_missing(model)
    return source


class MagicPrompt:
    """A causal language model that continues a start text into a prompt (CPU, float32)."""

    def __init__(self, tokenizer, model, source: str) -> None:
        self.tokenizer, self.model, self.source = tokenizer, model, source

    @classmethod
    def load(cls, model: str | None = None) -> MagicPrompt:
        """From a registry name, hub id or folder, only from this machine (never downloads)."""
        model = model or DEFAULT_MODEL
        source = check_magicprompt(model)
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise ConfigError("--engine magicprompt needs transformers and torch: pip install transformers torch") \
                from None
        log.info("inspire: loading the prompt model %s", source)
        try:
            lm = AutoModelForCausalLM.from_pretrained(source, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        except OSError as exc:
            if Path(source).is_dir():
                raise InputError(f"{source}: cannot load the prompt model ({first_line(exc)})") from None
            raise hub_missing(model) from None
        except (ValueError, KeyError) as exc:
            raise InputError(f"{source}: not a causal language model transformers can load ({first_line(exc)})") \
                from None
        except Exception as exc:  # torch.load(weights_only=True) refusing a .bin: UnpicklingError, RuntimeError
            reason = refused_by_weights_only(exc)
            if reason is None:
                raise
            raise InputError(f"{source}: cannot load the prompt model: {reason}") from None
        return cls(tokenizer, lm.eval(), source)

    def continue_text(self, start: str, seed: int, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
        """The sampled continuation of ``start`` (without ``start``), seeded by ``seed``."""
        import torch

        inputs = self.tokenizer(start, return_tensors="pt")
        length = inputs["input_ids"].shape[1]
        if length == 0:
            raise InputError(f"{self.source}: its tokenizer makes no tokens of {start!r}")
        room = getattr(self.model.config, "max_position_embeddings", None)
        if room is not None:
            max_new_tokens = min(max_new_tokens, room - length)
        if max_new_tokens <= 0:
            raise ConfigError(f"the topic {start!r} is {length} tokens, longer than the prompt model takes; "
                              "shorten it")
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed % 2**64)
            out = self.model.generate(**inputs, do_sample=True, top_k=TOP_K, top_p=TOP_P,
                                      repetition_penalty=REPETITION_PENALTY, max_new_tokens=max_new_tokens,
                                      pad_token_id=pad, eos_token_id=eos)
        return self.tokenizer.decode(out[0, length:], skip_special_tokens=True)


def _magicprompt_prompts(generator: MagicPrompt, topic: str | None, n: int, seed: int, draw: PhraseDraw,
                         max_words: int, progress: bool) -> list[str]:
    prompts: list[str] = []
    for i in progress_bar(range(n), desc="inspire", enabled=progress, leave=False):
        start = topic or draw.subject(max_words)
        text = (generator.continue_text(start, seed + i).splitlines() or [""])[0]
        prompt = clean_prompt(start + text, max_words)
        if not clean_prompt(text) or prompt == clean_prompt(start, max_words) or prompt in prompts:
            why = "repeats an earlier prompt" if prompt in prompts else "adds nothing once cleaned"
            log.debug("inspire: prompt %d: the model's text %s; using the phrase lists for it", i + 1, why)
            prompt = _distinct(lambda: draw.compose(start, max_words), prompts, n, max_words)
        prompts.append(prompt)
    return prompts


# ---------------------------------------------------------------------------------------------
# The call

def topic_phrase(topics: list[str]) -> str | None:
    """The TOPIC words joined into one cleaned seed phrase, or None when there are none."""
    phrase = clean_prompt(" ".join(t for t in topics if t))
    return phrase or None


def choose_engine(engine: str, model: str | None) -> str:
    """``phrases`` or ``magicprompt``; ``auto`` logs one line saying which and why."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "phrases":
        if model is not None:
            raise ConfigError("--model is for --engine magicprompt (or auto); the phrases engine uses no model")
        return engine
    if engine == "magicprompt" or model is not None:  # a model the user named must load, or fail loudly
        return "magicprompt"
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        log.info("inspire: transformers and torch are not installed; using the phrase lists")
        return "phrases"
    try:
        source = check_magicprompt(DEFAULT_MODEL)
    except WeightsMissingError:
        log.info("inspire: no MagicPrompt weights here (artwalk models download %s); using the phrase lists",
                 DEFAULT_MODEL)
        return "phrases"
    log.info("inspire: MagicPrompt weights found (%s); using them (--engine phrases for the phrase lists)", source)
    return "magicprompt"


def check_settings(n: int, max_words: int) -> None:
    if not 1 <= n <= MAX_PROMPTS:
        raise ConfigError(f"-n {n}: give 1 to {MAX_PROMPTS} prompts")
    if max_words < 1:
        raise ConfigError(f"--max-words {max_words}: must be 1 or more")


def _distinct(make, taken: list[str], n: int, max_words: int) -> str:
    """A cleaned prompt from ``make()`` that is not in ``taken``."""
    for _ in range(200):
        prompt = clean_prompt(make(), max_words)
        if prompt and prompt not in taken:
            return prompt
    raise ConfigError(f"cannot make {n} different prompts of at most {max_words} words: raise --max-words")


def inspire(topics: list[str], n: int, seed: int = 0, engine: str = "auto", model: str | None = None,
            max_words: int = 40, *, progress: bool = False) -> list[str]:
    """``n`` different, cleaned prompts about ``topics`` (joined into one phrase; none: drawn subjects).

    The same arguments give the same prompts. ``engine``: ``auto``, ``phrases`` or
    ``magicprompt``; ``model``: the prompt model's registry name, hub id or folder
    (default ``magicprompt``). ``progress``: a bar while the model generates.
    """
    check_settings(n, max_words)
    name = choose_engine(engine, model)
    topic = topic_phrase(topics)
    if topic and len(topic.split()) > max_words:
        raise ConfigError(f"the topic has {len(topic.split())} words, more than --max-words {max_words}: raise it")
    draw = PhraseDraw(random.Random(seed))
    if name == "magicprompt":
        generator = MagicPrompt.load(model)
        return _magicprompt_prompts(generator, topic, n, seed, draw, max_words, progress)
    prompts: list[str] = []
    for _ in range(n):
        prompts.append(_distinct(lambda: draw.compose(topic or draw.subject(max_words), max_words), prompts, n,
                                 max_words))
    return prompts

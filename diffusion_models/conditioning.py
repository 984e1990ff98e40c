"""What a prompt keyframe carries: its conditioning, and the mix of two along a segment.

A :class:`Conditioning` is everything an engine needs to render one frame from text,
and nothing else: the composable prompt's terms, each with its encoded tensors, the
negative side, the unconditional tensors, the initial noise, the seed and guidance,
and the identity of the engine that made the tensors (model, steps, dtype, ...)::

    positive   [Term(text, weight > 0, tensors)]   noise = u + sum_i w_i g (eps(c_i) - u)
    negative   [Term(text, weight > 0, tensors)]   u: the negative side (below)
    uncond     the empty prompt's tensors          pad: one empty 77-token chunk, to pad
    noise      (1, C, h, w) float32, from the keyframe's seed

The negative side ``u`` is eps(uncond) with no negative term; eps(n) for one negative
term of weight 1 (a plain negative prompt); and eps(uncond) + sum_j w_j (eps(n_j) -
eps(uncond)) otherwise. A term of weight 0 is dropped before anything runs, so it has
no effect on a single byte. Tensor names per engine: ``embeds`` (text embeddings,
(1, 77 k, D), k chunks), ``pooled`` (SDXL's pooled text embedding), ``image_embeds``
(Kandinsky's prior output).

:func:`mix` is the in-between at fraction t from keyframe A to keyframe B: the terms
are matched by position, a term one side lacks is the unconditional tensors at weight
0, and each term's tensors are SLERPed (:mod:`diffusion_models.slerp`), the weights
moved linearly; the noise is SLERPed between the two seeded noises. ``mix(a, b, 0)``
is ``a``'s conditioning exactly (when their terms have the same lengths).

On disk (:meth:`Conditioning.to_bytes`) a conditioning is one safetensors file: the
tensors by name (``noise``, ``uncond.embeds``, ``positive.0.embeds``, ...) and the
rest as JSON in its metadata. Torch is imported only by the functions that need it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from artwalk.errors import ConfigError, InputError
from diffusion_models.slerp import slerp

CHUNK = 77  # tokens per encoded chunk: 75 of the prompt, begin and end


@dataclass
class Term:
    text: str
    weight: float
    tensors: dict[str, Any]  # name -> torch tensor (CPU, float32)


@dataclass
class Conditioning:
    engine: dict  # the identity of the engine that encoded it
    size: tuple[int, int]  # (W, H) of the frame it renders
    seed: int
    guidance: float
    positive: list[Term]
    negative: list[Term]
    uncond: dict[str, Any]
    pad: dict[str, Any] = field(default_factory=dict)  # one empty chunk of each sequence tensor
    noise: Any = None
    negative_text: str = ""  # as written (the walk's --negative, the line's --neg)

    def describe(self) -> dict:
        """The JSON part: what was asked, without the tensors."""
        return {
            "engine": self.engine, "size": list(self.size), "seed": self.seed, "guidance": self.guidance,
            "prompts": [{"text": t.text, "weight": t.weight} for t in self.positive],
            "negative_terms": [{"text": t.text, "weight": t.weight} for t in self.negative],
            "negative": self.negative_text,
        }

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        tensors = {"noise": self.noise}
        tensors.update({f"uncond.{k}": v for k, v in self.uncond.items()})
        tensors.update({f"pad.{k}": v for k, v in self.pad.items()})
        for side, terms in (("positive", self.positive), ("negative", self.negative)):
            for i, term in enumerate(terms):
                tensors.update({f"{side}.{i}.{k}": v for k, v in term.tensors.items()})
        tensors = {k: v.detach().to("cpu").clone() for k, v in tensors.items()}  # no shared storage
        return save(tensors, metadata={"conditioning": json.dumps(self.describe(), sort_keys=True)})

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "conditioning") -> "Conditioning":
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            tensors = load(data)
            meta = json.loads(_metadata(data)["conditioning"])
        except (SafetensorError, KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{source}: not a conditioning file ({exc})") from None
        group = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731

        def terms(side: str, described: list[dict]) -> list[Term]:
            return [Term(d["text"], float(d["weight"]), group(f"{side}.{i}.")) for i, d in enumerate(described)]

        return cls(engine=meta["engine"], size=tuple(meta["size"]), seed=int(meta["seed"]),
                   guidance=float(meta["guidance"]), positive=terms("positive", meta["prompts"]),
                   negative=terms("negative", meta["negative_terms"]), uncond=group("uncond."), pad=group("pad."),
                   noise=tensors["noise"], negative_text=meta.get("negative", ""))


def _metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's header."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]).get("__metadata__", {})


def split_weights(parts, negative: str = "") -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Composable parts (with ``.text``, ``.weight``) and a negative prompt -> the positive and
    the negative terms as (text, weight): a weight of 0 is dropped, a negative weight moves
    the part to the negative side with its magnitude, after the negative prompt (weight 1)."""
    positive = [(p.text, float(p.weight)) for p in parts if p.weight > 0]
    negatives = ([(negative, 1.0)] if negative else []) + [(p.text, -float(p.weight)) for p in parts if p.weight < 0]
    return positive, negatives


def pad_tokens(x, length: int, chunk):
    """A sequence tensor (1, n, D) padded to ``length`` tokens with empty chunks (an all-zero
    sequence, SDXL's unconditional one, with zeros)."""
    import torch

    n = x.shape[1]
    if n == length:
        return x
    if n > length or (length - n) % chunk.shape[1]:
        raise ValueError(f"cannot pad {n} tokens to {length}")
    fill = chunk.to(x.dtype) if x.any() else torch.zeros_like(chunk, dtype=x.dtype)
    return torch.cat([x, *([fill] * ((length - n) // chunk.shape[1]))], dim=1)


def _mix_tensors(a: dict, b: dict, pad: dict, t: float) -> dict:
    out = {}
    for name, xa in a.items():
        xb = b[name]
        if name in pad and xa.shape[1] != xb.shape[1]:
            length = max(xa.shape[1], xb.shape[1])
            xa, xb = pad_tokens(xa, length, pad[name]), pad_tokens(xb, length, pad[name])
        out[name] = slerp(xa, xb, t)
    return out


def _mix_terms(ta: list[Term], tb: list[Term], uncond: dict, pad: dict, t: float) -> list[Term]:
    out = []
    for i in range(max(len(ta), len(tb))):
        a = ta[i] if i < len(ta) else Term("", 0.0, uncond)
        b = tb[i] if i < len(tb) else Term("", 0.0, uncond)
        weight = (1.0 - t) * a.weight + t * b.weight
        if weight == 0.0:
            continue  # no effect at all: left out, as a weight-0 part is
        text = a.text if (t < 0.5 and a.text) or not b.text else b.text
        out.append(Term(text, weight, _mix_tensors(a.tensors, b.tensors, pad, t)))
    return out


def mix(a: Conditioning, b: Conditioning, t: float, guidance: float | None = None) -> Conditioning:
    """The conditioning at fraction ``t`` from ``a`` to ``b`` (``guidance``: the schedule's
    value at that frame; default the linear mix of the two)."""
    if a.engine != b.engine:
        raise ConfigError("these two keyframes were encoded by different engines or models; re-encode one")
    if tuple(a.size) != tuple(b.size):
        raise ConfigError(f"these two keyframes differ in size ({a.size[0]}x{a.size[1]} and "
                          f"{b.size[0]}x{b.size[1]})")
    t = float(t)
    if guidance is None:
        guidance = (1.0 - t) * a.guidance + t * b.guidance
    return replace(
        a, seed=a.seed if t < 0.5 else b.seed, guidance=float(guidance),
        positive=_mix_terms(a.positive, b.positive, a.uncond, a.pad, t),
        negative=_mix_terms(a.negative, b.negative, a.uncond, a.pad, t),
        noise=slerp(a.noise, b.noise, t), negative_text=a.negative_text if t < 0.5 else b.negative_text,
    )


# ---------------------------------------------------------------------------------------------
# The composable sum, for every engine's denoising loop

@dataclass(frozen=True)
class Layout:
    """Which rows of one batched network call are which terms, and how they combine."""

    rows: list  # tensors dicts, in batch order
    negative: list[float]  # weights of the negative rows (first in the batch)
    uncond: bool  # an unconditional row follows them
    positive: list[float]  # weights of the positive rows (last)
    guidance: float

    def combine(self, eps):
        """The guided prediction from the batch's predictions ``eps`` (one row per term)."""
        k = len(self.negative)
        u_row = eps[k : k + 1] if self.uncond else None
        if not self.negative:
            u = u_row
        elif u_row is None:  # one negative term of weight 1: a plain negative prompt
            u = eps[0:1]
        else:
            u = u_row
            for j, w in enumerate(self.negative):
                u = u + w * (eps[j : j + 1] - u_row)
        first = k + int(self.uncond)
        if u is None:  # no guidance at all: the single prompt's prediction
            return eps[first : first + 1]
        out = u
        for i, w in enumerate(self.positive):
            out = out + (w * self.guidance) * (eps[first + i : first + i + 1] - u)
        return out


def layout(cond: Conditioning) -> Layout:
    """The batch for ``cond``. A guidance of 1 or less means no classifier-free guidance
    (as in diffusers): the sum is taken with g = 1, and one prompt of weight 1 is then its
    own prediction: no unconditional row, and its negative prompt has no effect."""
    if not cond.positive:
        raise ConfigError("a prompt needs at least one part with a positive weight")
    g = cond.guidance if cond.guidance > 1.0 else 1.0
    if len(cond.positive) == 1 and cond.positive[0].weight == 1.0 and g == 1.0:
        # u + (c - u) = c, whatever u is: no unconditional row, and a negative side changes nothing
        return Layout([cond.positive[0].tensors], [], False, [1.0], g)
    negative = [t.weight for t in cond.negative]
    plain_negative = len(cond.negative) == 1 and negative[0] == 1.0
    rows = [t.tensors for t in cond.negative] + ([] if plain_negative else [cond.uncond]) + \
        [t.tensors for t in cond.positive]
    return Layout(rows, negative, not plain_negative, [t.weight for t in cond.positive], g)


def batch(rows: list[dict], name: str, pad: dict):
    """One tensor of the rows' ``name`` tensors, sequences padded to the longest."""
    import torch

    xs = [r[name] for r in rows]
    if name in pad:
        length = max(x.shape[1] for x in xs)
        xs = [pad_tokens(x, length, pad[name]) for x in xs]
    return torch.cat(xs, dim=0)

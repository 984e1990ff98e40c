"""Benchmark: seconds per image of ``artwalk interrogate`` (BLIP caption + classic ranking).

Full-size architectures with random weights, built from config, saved and loaded back
through the real loader (:class:`pipeline.interrogate.Models`), so nothing is
downloaded; the time of a forward pass does not depend on the weights. The words differ
(random weights write random words) but the caption length is fixed to
``--caption-length`` new tokens by disabling the end token, which is what a real caption
of that length costs.

- BLIP-base (ViT-B/16 at 384, BERT-base decoder; ``--blip large``: ViT-L/16) and
  CLIP ViT-L/14 (SD 1.x's text encoder), float32 on CPU by default;
- tokenizers: a word-level vocabulary of every word in the phrase lists, so a phrase is
  about as many tokens as with CLIP's real BPE (a byte-level one would make it 5x longer).

It measures, in one run: loading both models, embedding the shipped phrase lists once
(the cold first run), then per image: the caption alone, and caption + classic with the
lists' embeddings cached (a second run); it prints the ratios of cold / warm and of
classic / caption::

    python bench/bench_interrogate.py                    # CPU, BLIP-base + ViT-L/14, 3 images
    python bench/bench_interrogate.py --blip large --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

log = logging.getLogger("bench_interrogate")

BLIP_VISION = {"base": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
               "large": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)}
CLIP_L = dict(
    text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     max_position_embeddings=77, projection_dim=768),
    vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                       image_size=224, patch_size=14, projection_dim=768),
    projection_dim=768)
BERT_VOCAB = 30524


def _word_tokenizer(words: list[str], bos: str, eos: str, pad: str, max_length: int):
    """A fast tokenizer over whole words (lower-cased, split at spaces and punctuation)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in (pad, bos, eos, "[UNK]", *words):
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A {eos}",
                                                       special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   unk_token="[UNK]", model_max_length=max_length), len(vocab)


def build(root: Path, blip: str) -> tuple[Path, Path, dict]:
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, CLIPConfig, CLIPModel, \
        CLIPImageProcessor

    from pipeline.interrogate import phrase_lists

    words = sorted({w.lower() for phrases in phrase_lists().values() for p in phrases
                    for w in p.replace("-", " ").replace("'", " ").replace(".", " ").split()})
    torch.manual_seed(0)
    blip_dir, clip_dir = root / "blip", root / "clip"
    tok, _ = _word_tokenizer(words, "[DEC]", "[SEP]", "[PAD]", 512)
    config = BlipConfig(text_config=dict(vocab_size=BERT_VOCAB, bos_token_id=tok.bos_token_id,
                                         sep_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
                        vision_config={**BLIP_VISION[blip], "image_size": 384, "patch_size": 16})
    model = BlipForConditionalGeneration(config)
    params = {"blip": sum(p.numel() for p in model.parameters())}
    model.save_pretrained(blip_dir)
    del model
    tok.save_pretrained(blip_dir)
    BlipImageProcessor(size={"height": 384, "width": 384}).save_pretrained(blip_dir)

    tok, size = _word_tokenizer(words, "<|startoftext|>", "<|endoftext|>", "<|endoftext|>", 77)
    config = CLIPConfig(**{**CLIP_L, "text_config": {**CLIP_L["text_config"], "vocab_size": max(size, 49408),
                                                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                                                     "pad_token_id": tok.pad_token_id}})
    model = CLIPModel(config)
    params["clip"] = sum(p.numel() for p in model.parameters())
    model.save_pretrained(clip_dir)
    del model
    tok.save_pretrained(clip_dir)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size=224).save_pretrained(clip_dir)
    return blip_dir, clip_dir, params


def pictures(n: int):
    import numpy as np
    from PIL import Image

    from artwalk.images import list_images, load_image, to_uint8

    examples = list_images(REPO / "examples", report=False)
    out = [Image.fromarray(to_uint8(load_image(p))) for p in examples[:n]]
    rng = np.random.default_rng(0)
    while len(out) < n:
        out.append(Image.fromarray((rng.random((720, 1280, 3)) * 255).astype("uint8")))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blip", choices=("base", "large"), default="base")
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--caption-length", type=int, default=20, help="new tokens per caption (default 20)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    from pipeline import interrogate as lib

    with tempfile.TemporaryDirectory(prefix="bench-interrogate-") as tmp:
        os.environ["ARTWALK_CACHE"] = str(Path(tmp) / "cache")
        t = time.perf_counter()
        blip_dir, clip_dir, params = build(Path(tmp), args.blip)
        log.info("built and saved the random models in %.1f s: BLIP-%s %.0fM, CLIP ViT-L/14 %.0fM parameters",
                 time.perf_counter() - t, args.blip, params["blip"] / 1e6, params["clip"] / 1e6)
        config = lib.InterrogateConfig(folder=Path(tmp), caption_model=str(blip_dir), clip_model=str(clip_dir),
                                       caption_length=args.caption_length, device=args.device, dtype=args.dtype,
                                       progress=False)
        models = lib.Models(config)
        t = time.perf_counter()
        models.blip, models.clip, models.tokenizer
        load_s = time.perf_counter() - t
        models.blip[0].generation_config.eos_token_id = None  # every caption is caption_length tokens long
        images = pictures(args.images)
        tables = lib.Tables(models, lib.folder_identity(clip_dir), progress=False)
        t = time.perf_counter()
        for name in lib.LISTS:
            tables.get(name)
        cold_s = time.perf_counter() - t
        n_phrases = sum(len(v) for v in lib.phrase_lists().values())

        caption_s, classic_s = [], []
        for picture in images:
            t = time.perf_counter()
            caption = models.caption(picture)
            caption_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            features = models.image_features(picture)
            lib.fit(lib.classic_parts(caption, tables, features), models.count, 75)
            classic_s.append(time.perf_counter() - t)
        # A second run: the lists come from the cache.
        t = time.perf_counter()
        again = lib.Tables(models, lib.folder_identity(clip_dir), progress=False)
        for name in lib.LISTS:
            again.get(name)
        warm_s = time.perf_counter() - t
        assert not again.embedded

    caption_mean = sum(caption_s) / len(caption_s)
    per_image = caption_mean + sum(classic_s) / len(classic_s)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    bytes_per = {"float32": 4, "float16": 2, "bfloat16": 2}[args.dtype]
    figures = {
        "device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(), "blip": args.blip,
        "params_m": {k: round(v / 1e6, 1) for k, v in params.items()}, "load_s": round(load_s, 2),
        "phrases": n_phrases, "embed_lists_cold_s": round(cold_s, 2), "lists_from_cache_s": round(warm_s, 3),
        "caption_s_per_image": round(caption_mean, 2), "caption_plus_classic_s_per_image": round(per_image, 2),
        "classic_over_caption": round(per_image / caption_mean, 2),
        "first_run_over_second_run_3_images": round((cold_s + 3 * per_image) / (warm_s + 3 * per_image), 2),
        "weights_gb": round(sum(params.values()) * bytes_per / 1e9, 2), "peak_rss_gb": round(rss_gb, 2),
    }
    for key, value in figures.items():
        print(f"{key:36s} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

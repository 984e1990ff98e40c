"""Tiny, seeded, random-weight diffusion pipelines for the keyframe-engine tests.

Each ``build_*`` function makes one pipeline folder with ``save_pretrained`` in the
layout the hub uses, so the tests load it back through the same loader the CLI
uses (``from_pretrained(local_dir)``). Nothing is downloaded: the tokenizer is a
byte-level CLIP vocabulary written here, every model is built from a config.

The recipes follow diffusers' own dummy components (tests/pipelines/kandinsky2_2,
tests/pipelines/stable_unclip), shrunk to what runs in well under a second a call.

Twins (:func:`save_twin`, :func:`install_twins`): for each hub model of the registry, a tiny
pipeline with the real checkpoint's model_index.json, component classes and scheduler
configs, taken from tests/twins/<registry name>/ (see its README for the sources).
"""

from __future__ import annotations

from pathlib import Path

EMBED = 32  # hidden size of every tiny CLIP tower and of the image embeddings


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def tokenizer():
    """A CLIP tokenizer over single bytes only (no merges): 514 tokens, max length 77."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _text_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        hidden_size=EMBED, projection_dim=EMBED, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, vocab_size=1000, max_position_embeddings=77,
        bos_token_id=512, eos_token_id=513, pad_token_id=513,
    )


def _vision_encoder(image_size: int, patch: int):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=EMBED, projection_dim=EMBED, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, image_size=image_size, patch_size=patch, num_channels=3,
    )).eval()


def _clip_image_processor(size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        crop_size=size, size=size, do_center_crop=True, do_normalize=True, do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
        resample=3,
    )


# --- Kandinsky 2.2 -------------------------------------------------------------------

def kandinsky_prior():
    import torch
    from diffusers import KandinskyV22PriorPipeline, PriorTransformer, UnCLIPScheduler
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=EMBED, num_layers=1)
    # clip_std starts at zero, which would make every embedding the prior outputs zero.
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))
    torch.manual_seed(0)
    text_encoder = CLIPTextModelWithProjection(_text_config()).eval()
    return KandinskyV22PriorPipeline(
        prior=prior, image_encoder=_vision_encoder(224, 14), text_encoder=text_encoder,
        tokenizer=tokenizer(),
        scheduler=UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                  num_train_timesteps=1000, clip_sample=True, clip_sample_range=10.0),
        image_processor=_clip_image_processor(224),
    )


def _kandinsky_unet(in_channels: int):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        in_channels=in_channels, out_channels=8, addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64), layers_per_block=1,
        encoder_hid_dim=EMBED, encoder_hid_dim_type="image_proj", cross_attention_dim=EMBED,
        attention_head_dim=4, resnet_time_scale_shift="scale_shift", class_embed_type=None,
    ).eval()


def _movq():
    import torch
    from diffusers import VQModel

    torch.manual_seed(0)
    # Four levels like the real MoVQ: latents are 1/8 of the image, W x H a multiple of 64.
    return VQModel(
        block_out_channels=[32, 32, 32, 32], down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
        in_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8, norm_type="spatial",
        num_vq_embeddings=12, out_channels=3, up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
        vq_embed_dim=4,
    ).eval()


def _kandinsky_scheduler():
    from diffusers import DDPMScheduler

    # The real decoder's scheduler: DDPM, linear betas, learned-range variance ignored.
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                         clip_sample=False, steps_offset=1, prediction_type="epsilon", thresholding=False,
                         variance_type="fixed_small")


def kandinsky_decoder():
    from diffusers import KandinskyV22Pipeline

    return KandinskyV22Pipeline(unet=_kandinsky_unet(4), scheduler=_kandinsky_scheduler(), movq=_movq())


def kandinsky_inpaint():
    from diffusers import KandinskyV22InpaintPipeline

    return KandinskyV22InpaintPipeline(unet=_kandinsky_unet(9), scheduler=_kandinsky_scheduler(), movq=_movq())


# --- Stable Diffusion ----------------------------------------------------------------

def _sd_vae():
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    # Four levels like the real VAE: latents are 1/8 of the image.
    return AutoencoderKL(
        block_out_channels=[16, 16, 16, 16], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=1, norm_num_groups=8,
    ).eval()


def _sd_parts(in_channels: int, **unet_extra) -> dict:
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=in_channels,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=EMBED,
        attention_head_dim=(2, 4), **unet_extra,
    ).eval()
    vae = _sd_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config()).eval()
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer(), scheduler=scheduler)


def stable_diffusion():
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**_sd_parts(4), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def stable_diffusion_inpaint():
    from diffusers import StableDiffusionInpaintPipeline

    return StableDiffusionInpaintPipeline(**_sd_parts(9), safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)


def stable_diffusion_xl():
    """A tiny SDXL: two text towers side by side, pooled text and size conditioning."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + EMBED, cross_attention_dim=2 * EMBED,
    ).eval()
    vae = _sd_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config()).eval()
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config()).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    tok2 = tokenizer()
    tok2.pad_token = "!"  # SDXL's second tokenizer pads with '!', as the real one does
    return StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer(), tokenizer_2=tok2, unet=unet, scheduler=scheduler)


def stable_unclip():
    import torch
    from diffusers import DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

    parts = _sd_parts(4, class_embed_type="projection", projection_class_embeddings_input_dim=EMBED * 2,
                      use_linear_projection=True, upcast_attention=True)
    parts["scheduler"] = type(parts["scheduler"]).from_config(parts["scheduler"].config,
                                                              prediction_type="v_prediction")
    torch.manual_seed(0)
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=EMBED).eval()
    return StableUnCLIPImg2ImgPipeline(
        feature_extractor=_clip_image_processor(32), image_encoder=_vision_encoder(32, 4),
        image_normalizer=normalizer, image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        **parts,
    )


BUILDERS = {
    "kandinsky-prior": kandinsky_prior,
    "kandinsky-decoder": kandinsky_decoder,
    "kandinsky-inpaint": kandinsky_inpaint,
    "sd": stable_diffusion,
    "sd-inpaint": stable_diffusion_inpaint,
    "sdxl": stable_diffusion_xl,
    "unclip": stable_unclip,
}


def save_all(root: Path, names=tuple(BUILDERS)) -> dict[str, Path]:
    """Build and save_pretrained each named tiny pipeline under ``root/<name>``."""
    root = Path(root)
    folders = {}
    for name in names:
        folder = root / name
        if not (folder / "model_index.json").is_file():
            BUILDERS[name]().save_pretrained(folder)
        folders[name] = folder
    return folders


def install_in_hub_cache(folder: Path, repo_id: str, cache: Path, revision: str = "0" * 40) -> Path:
    """Lay ``folder`` out in a Hugging Face hub cache as ``repo_id`` (as a download would).

    ``<cache>/models--owner--name/refs/main`` names the snapshot; the files sit in
    ``snapshots/<revision>/``. Loading ``repo_id`` with ``HF_HUB_CACHE=<cache>`` and
    ``HF_HUB_OFFLINE=1`` then finds them without any network.
    """
    import shutil

    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(folder, repo / "snapshots" / revision, dirs_exist_ok=True)
    return repo


# --- Interrogation: BLIP captioning and CLIP ---------------------------------------------

CAPTION_WORDS = ("a an the of with on in at and painting photo drawing dog cat house sky sea boat field tree man "
                 "woman city street night sunset mountain river flowers portrait red blue green golden old small "
                 "big dark bright").split()


def blip_captioner(folder: Path) -> Path:
    """A tiny BLIP captioning model saved as the hub lays it out (config, weights, a
    WordPiece tokenizer with BLIP's ``[DEC]`` start token, the image processor)."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CAPTION_WORDS]) + "\n", "utf-8")
    words = BertTokenizer(str(vocab))
    words.add_special_tokens({"bos_token": "[DEC]"})
    torch.manual_seed(0)
    config = BlipConfig(
        text_config=dict(vocab_size=len(words), hidden_size=EMBED, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, bos_token_id=words.bos_token_id,
                         sep_token_id=words.sep_token_id, pad_token_id=words.pad_token_id),
        vision_config=dict(hidden_size=EMBED, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=EMBED)
    BlipForConditionalGeneration(config).eval().save_pretrained(folder)
    words.save_pretrained(folder)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def clip_ranker(folder: Path) -> Path:
    """A tiny CLIPModel (text and vision towers, projections) with the byte-level tokenizer
    and a CLIP image processor, saved as the hub lays it out."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    folder = Path(folder)
    torch.manual_seed(0)
    config = CLIPConfig(text_config=_text_config().to_dict(),
                        vision_config=dict(hidden_size=EMBED, intermediate_size=37, num_hidden_layers=2,
                                           num_attention_heads=4, image_size=32, patch_size=8),
                        projection_dim=EMBED)
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    _clip_image_processor(32).save_pretrained(folder)
    return folder


# --- Twins: tiny models with the real checkpoints' configurations ---------------------------------

TWINS = Path(__file__).resolve().parent / "twins"  # <registry name>/model_index.json + scheduler configs

# The tiny pipeline whose networks each twin takes (its schedulers and model_index are the real ones').
_TWIN_BASE = {
    "sd15": "sd", "sd-turbo": "sd", "sd2-inpaint": "sd-inpaint", "sd21-unclip": "unclip", "sdxl": "sdxl",
    "sdxl-turbo": "sdxl", "kandinsky-2-2-prior": "kandinsky-prior", "kandinsky-2-2-decoder": "kandinsky-decoder",
    "kandinsky-2-2-decoder-inpaint": "kandinsky-inpaint",
}
# transformers folders: the real config.json's architecture, built by these.
_TWIN_TRANSFORMERS = {"blip-large": "blip", "blip-base": "blip", "clip-vit-l-14": "clip", "clip-vit-h-14": "clip",
                      "magicprompt": "gpt2"}
# Class names that load as the same class (transformers 5 has no CLIPFeatureExtractor; without torchvision
# the CLIP image processor is its PIL implementation).
_SAME_CLASS = {"CLIPFeatureExtractor": "CLIPImageProcessor", "CLIPImageProcessorPil": "CLIPImageProcessor"}


def twin_json(name: str, relpath: str) -> dict:
    """A published configuration of registry model ``name`` (tests/twins/<name>/<relpath>), without the
    ``_source`` note that says where it was taken from."""
    import json

    data = json.loads((TWINS / name / relpath).read_text("utf-8"))
    data.pop("_source", None)
    return data


def _components(index: dict) -> dict[str, list]:
    """model_index.json's component entries: name -> [library, class] (or [None, None])."""
    return {k: v for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2}


def _safety_checker():
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    torch.manual_seed(0)
    return StableDiffusionSafetyChecker(CLIPConfig(
        text_config=_text_config().to_dict(), projection_dim=EMBED,
        vision_config=dict(hidden_size=EMBED, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8))).eval()


_EXTRA_PARTS = {"feature_extractor": lambda: _clip_image_processor(32), "safety_checker": _safety_checker}


def build_twin(name: str):
    """The tiny pipeline of registry model ``name``: its model_index's pipeline and component classes,
    its schedulers built from the published configs, tiny networks."""
    import inspect

    import diffusers

    index = twin_json(name, "model_index.json")
    base = BUILDERS[_TWIN_BASE[name]]().components
    parts = {}
    for role, (library, cls_name) in _components(index).items():
        if cls_name is None:
            parts[role] = None
        elif cls_name.endswith("Scheduler"):
            parts[role] = getattr(diffusers, cls_name).from_config(twin_json(name, f"{role}/scheduler_config.json"))
        else:
            part = base.get(role) or _EXTRA_PARTS[role]()
            got = type(part).__name__
            if _SAME_CLASS.get(got, got) != _SAME_CLASS.get(cls_name, cls_name):
                raise AssertionError(f"twin {name}: {role} is a {got}, the checkpoint's is a {cls_name}")
            parts[role] = part
    cls = getattr(diffusers, index["_class_name"])
    accepted = inspect.signature(cls.__init__).parameters
    # The index's settings (requires_safety_checker, force_zeros_for_empty_prompt), but not SDXL's
    # add_watermarker, whose package is not installed: the saved index gets it back (save_twin).
    settings = {k: v for k, v in index.items()
                if k in accepted and k not in parts and not k.startswith("_") and k != "add_watermarker"}
    return cls(**parts, **settings)


def save_twin(name: str, folder: Path) -> Path:
    """Build the twin of ``name`` and save it as the hub lays it out, its model_index.json the published
    one (so loading reads the same classes and settings as the real checkpoint's)."""
    import json

    folder = Path(folder)
    if name in _TWIN_TRANSFORMERS:
        kind = _TWIN_TRANSFORMERS[name]
        {"blip": blip_captioner, "clip": clip_ranker, "gpt2": gpt2_prompter}[kind](folder)
        want = twin_json(name, "config.json")
        got = json.loads((folder / "config.json").read_text("utf-8"))
        if (got.get("architectures"), got.get("model_type")) != (want["architectures"], want["model_type"]):
            raise AssertionError(f"twin {name}: {got.get('architectures')} is not {want['architectures']}")
        return folder
    build_twin(name).save_pretrained(folder)
    index = json.loads((TWINS / name / "model_index.json").read_text("utf-8"))
    index.pop("_source", None)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", "utf-8")
    return folder


def gpt2_prompter(folder: Path) -> Path:
    """A 2-layer GPT-2 over single bytes (256 tokens + <|endoftext|>, no merges), saved as the hub has it."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    folder = Path(folder)
    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = eos = 256
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=EMBED, vocab_size=257, n_positions=128,
                               bos_token_id=eos, eos_token_id=eos)).eval().save_pretrained(folder)
    GPT2Tokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


def install_twins(cache: Path, names, root: Path) -> dict[str, Path]:
    """Each named twin built under ``root`` and laid out in the hub cache ``cache`` under its registry
    model's hub id, as ``artwalk models download NAME`` would leave it."""
    from artwalk.models import REGISTRY

    folders = {}
    for name in names:
        folder = save_twin(name, Path(root) / name)
        install_in_hub_cache(folder, REGISTRY[name].source, cache)
        folders[name] = folder
    return folders

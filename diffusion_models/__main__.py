"""``python -m diffusion_models INPUT OUT``: stage 1, keyframes. See the package docstring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import logging

from artwalk.cli import add_common_flags, artwalks_paths, run_cli
from artwalk.errors import ConfigError
from diffusion_models import KeyframeConfig, run
from diffusion_models.conform import FIT_MODES
from diffusion_models.engines import ALL_ENGINES, ENGINES, engine_for_model

log = logging.getLogger("diffusion_models")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m diffusion_models",
        description="Stage 1: conform the input images to W x H and make S in-between "
        "artworks per pair. Writes OUT/keyframes/ (a unit folder per original and per "
        "pair, and manifest.json). Reruns reuse every unchanged unit.",
    )
    p.add_argument("input", nargs="?", type=Path, help="folder of input images (natural order)")
    p.add_argument("output", nargs="?", type=Path, help="run folder to write (OUT)")
    p.add_argument("--input_path", help="ArtWalks form: parent folder of the image folder")
    p.add_argument("--folder_name", help="ArtWalks form: image folder name under --input_path; "
                   "also the run folder name under --output_path")
    p.add_argument("--output_path", help="ArtWalks form: parent of the run folder (default: output)")
    p.add_argument("--engine", default=None,
                   help=f"keyframe engine: none, kandinsky, unclip or sd (installed here: {', '.join(ENGINES)}; "
                   "default none, or the engine --model belongs to)")
    p.add_argument("--interpolation_steps", "-S", type=int, default=5,
                   help="S: in-betweens generated per pair of images (default 5; none makes 0)")
    p.add_argument("--w", "--width", dest="width", type=int, default=1280, help="frame width (default 1280)")
    p.add_argument("--h", "--height", dest="height", type=int, default=720, help="frame height (default 720)")
    p.add_argument("--fit", choices=FIT_MODES, default="cover",
                   help="how an image of another aspect fills W x H: cover (crop), "
                   "contain-blur (blurred bars) or contain-mirror (mirrored bars); default cover")
    p.add_argument("--square_crop", action="store_true", help="square walk: min(W, H) on each side, centre crop")
    p.add_argument("--no_originals", action="store_true", help="leave the originals out; keep only in-betweens")
    p.add_argument("--outpaint", action="store_true",
                   help="extend images of another aspect with the diffusion model instead of --fit")
    p.add_argument("--loop", action="store_true", help="also walk from the last image back to the first")
    p.add_argument("--seed", type=int, default=0, help="walk seed; each pair's seed derives from it (default 0)")
    m = p.add_argument_group(
        "diffusion engines (kandinsky, unclip, sd)",
        "Unset options take the engine's default. Models are registry names (`artwalk models list`), "
        "hub ids from the Hugging Face cache (HF_HUB_OFFLINE=1 honoured) or local folders.")
    m.add_argument("--model", "--model-path", dest="model", metavar="NAME|ID|DIR",
                   help="the engine's model: kandinsky's decoder (kandinsky-2-2-decoder), unclip's pipeline "
                   "(sd21-unclip), sd's checkpoint (sd15); or a folder with prior/, decoder/, unclip/, sd/, "
                   "inpaint/ pipeline folders. An engine name here (ArtWalks' --model) picks the engine")
    m.add_argument("--prior-model", metavar="NAME|ID|DIR", help="kandinsky: the prior (kandinsky-2-2-prior)")
    m.add_argument("--outpaint-model", metavar="NAME|ID|DIR",
                   help="the inpainting model for --outpaint (kandinsky-2-2-decoder-inpaint; sd2-inpaint)")
    m.add_argument("--device", help="auto (default: cuda when there, else cpu), cpu, cuda, cuda:1, ...")
    m.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"],
                   help="auto (default): float16 on cuda, float32 on cpu")
    m.add_argument("--steps", type=int, help="denoising steps (kandinsky 50, unclip 20, sd 50)")
    m.add_argument("--guidance", type=float, help="classifier-free guidance scale (kandinsky 4, unclip 10, sd 7.5)")
    m.add_argument("--strength", type=float,
                   help="sd: img2img strength from the slerped latents (0.6); kandinsky: below 1 starts each "
                   "in-between from the nearer original, anchoring it to the real paintings (1: off)")
    m.add_argument("--noise-level", type=int, help="unclip: noise added to the image embeddings, 0-999 (0)")
    m.add_argument("--prompt", help="unclip, sd: text prompt for every in-between (default none)")
    m.add_argument("--negative-prompt", help="what to steer away from (kandinsky: through the prior)")
    m.add_argument("--prompts-csv", type=Path, metavar="CSV",
                   help="unclip, sd: 'filename,prompt' rows; each in-between slerps its two images' prompts "
                   "(images not listed use --prompt)")
    m.add_argument("--attention-slicing", action="store_true", help="less GPU memory, a little slower")
    m.add_argument("--vae-tiling", action="store_true", help="decode large frames in tiles (unclip, sd)")
    m.add_argument("--cpu-offload", action="store_true",
                   help="keep models on the CPU and move each to the GPU only while it runs (small GPUs)")
    add_common_flags(p)
    return p


def pick_engine(engine: str | None, model: str | None) -> tuple[str, str | None]:
    """(engine, model): ArtWalks' `--model kandinsky` names the engine; a model implies its engine."""
    if model in ALL_ENGINES and engine in (None, model):
        return model, None
    if engine is None and model is not None:
        guessed = engine_for_model(model)
        if guessed is None:
            raise ConfigError(f"--model {model}: cannot tell which engine it is for; add --engine kandinsky|unclip|sd")
        log.info("--model %s: using engine %s", model, guessed)
        return guessed, model
    return engine or "none", model


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def go(args: argparse.Namespace) -> None:
        inp, out = artwalks_paths(args)
        inp, out = inp or args.input, out or args.output
        if inp is None or out is None:
            raise ConfigError("give INPUT and OUT folders (or --input_path/--folder_name)")
        engine, model = pick_engine(args.engine, args.model)
        run(KeyframeConfig(
            input_dir=inp, run_dir=out, width=args.width, height=args.height, fit=args.fit,
            square_crop=args.square_crop, engine=engine,
            interpolation_steps=args.interpolation_steps, seed=args.seed, loop=args.loop,
            no_originals=args.no_originals, outpaint=args.outpaint, progress=not args.quiet,
            model=model, prior_model=args.prior_model, outpaint_model=args.outpaint_model,
            device=args.device, dtype=None if args.dtype == "auto" else args.dtype, steps=args.steps,
            guidance=args.guidance, strength=args.strength, prompt=args.prompt,
            negative_prompt=args.negative_prompt, prompts_csv=args.prompts_csv, noise_level=args.noise_level,
            attention_slicing=args.attention_slicing, vae_tiling=args.vae_tiling, cpu_offload=args.cpu_offload,
        ))

    return run_cli(go, parser, argv)


if __name__ == "__main__":
    sys.exit(main())

"""ArtWalks' entry point: ``python diffusion_models/diffusion.py --input_path ... --model kandinsky``.

The same flags as ``python -m diffusion_models``, except that, as in ArtWalks,
``--model`` names the engine (``kandinsky``, ``unclip``, ...) when it is an engine's
name; any other value is the engine's model, as in ``python -m diffusion_models``.
"""

import sys
from pathlib import Path


def artwalks_argv(argv: list[str], engines: tuple[str, ...]) -> list[str]:
    """``--model kandinsky`` (or ``--model=kandinsky``) becomes ``--engine kandinsky``."""
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--model" and i + 1 < len(argv) and argv[i + 1] in engines:
            out += ["--engine", argv[i + 1]]
            i += 2
            continue
        if tok.startswith("--model=") and tok.split("=", 1)[1] in engines:
            tok = "--engine=" + tok.split("=", 1)[1]
        out.append(tok)
        i += 1
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from diffusion_models.__main__ import main
    from diffusion_models.engines import ENGINES

    sys.exit(main(artwalks_argv(sys.argv[1:], ENGINES.names), prog="diffusion_models/diffusion.py"))

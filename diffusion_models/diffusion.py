"""ArtWalks-compatible entry point: ``python diffusion_models/diffusion.py --input_path ...``.

Same flags as ``python -m diffusion_models``.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from diffusion_models.__main__ import main

    sys.exit(main())

#!/usr/bin/env bash
# full_pipeline.sh: a folder of images -> a walk video, one stage at a time.
#
# Positional (ArtWalks' form):
#   bash full_pipeline.sh INPATH FOLDER_NAME OUTPATH S I F MODEL [h w]
#     reads INPATH/FOLDER_NAME, writes the run folder OUTPATH/FOLDER_NAME;
#     S in-betweens per pair, I seconds per motion segment, F seconds of hold,
#     MODEL the keyframe engine (auto: the preset's), h x w the walk size.
# Named:
#   bash full_pipeline.sh --input DIR --output OUT [--preset auto|cpu|gpu] [-S N] [-I SEC]
#        [-F SEC] [--model NAME] [--h H] [--w W] [--fps FPS] [--easing NAME]
#        [--fit cover|contain-blur|contain-mirror] [--square_crop] [--seed N]
#        [--motion-engine NAME] [--upscale-engine NAME] [--keyframe-model M]
#        [--motion-model M] [--upscale-model M]   (engines: override the preset's;
#        models: registry name, hub id or path, for the neural engines)
#        [--target 2k] [--loop] [--audio FILE] [--format mp4|webm|gif] [--quiet]
#
# Each stage is a `python -m` call on the same run folder; each caches its units,
# so rerunning after a crash or an edit only does what is missing.
set -euo pipefail

PYTHON="${PYTHON:-python}"
preset="auto"; model=""; steps=5; sec_i=3; sec_f=2; height=720; width=1280
fps=24; easing="smoothstep"; target="2k"; fit="cover"; seed=0
loop=(); square=(); audio=(); format=(); quiet=()
motion_engine=(); upscale_engine=(); keyframe_model=(); motion_model=(); upscale_model=()
input=""; output=""

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

if [[ $# -gt 0 && "$1" != -* ]]; then
    if [[ $# -lt 7 ]]; then usage >&2; exit 2; fi
    input="$1/$2"; output="$3/$2"; steps="$4"; sec_i="$5"; sec_f="$6"
    [[ "$7" != "auto" ]] && model="$7"
    height="${8:-$height}"; width="${9:-$width}"
    shift $(( $# < 9 ? $# : 9 ))
fi
while [[ $# -gt 0 ]]; do
    case "$1" in
        --input) input="$2"; shift 2 ;;
        --output) output="$2"; shift 2 ;;
        --preset) preset="$2"; shift 2 ;;
        --model|--engine) model="$2"; shift 2 ;;
        -S|--interpolation_steps) steps="$2"; shift 2 ;;
        -I|--sec_interpolation) sec_i="$2"; shift 2 ;;
        -F|--sec_freeze) sec_f="$2"; shift 2 ;;
        --h|--height) height="$2"; shift 2 ;;
        --w|--width) width="$2"; shift 2 ;;
        --fps) fps="$2"; shift 2 ;;
        --easing) easing="$2"; shift 2 ;;
        --target) target="$2"; shift 2 ;;
        --fit) fit="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --square_crop) square=(--square_crop); shift ;;
        --motion-engine) motion_engine=(--motion-engine "$2"); shift 2 ;;
        --upscale-engine) upscale_engine=(--upscale-engine "$2"); shift 2 ;;
        --keyframe-model) keyframe_model=(--model "$2"); shift 2 ;;
        --motion-model) motion_model=(--model "$2"); shift 2 ;;
        --upscale-model) upscale_model=(--model "$2"); shift 2 ;;
        --loop) loop=(--loop); shift ;;
        --audio) audio=(--audio "$2"); shift 2 ;;
        --format) format=(--format "$2"); shift 2 ;;
        -q|--quiet) quiet=(--quiet); shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "full_pipeline.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [[ -z "$input" || -z "$output" ]]; then usage >&2; exit 2; fi

model_flag=()
[[ -n "$model" ]] && model_flag=(--model "$model")

# States the preset, frames, duration and disk; writes walk.json; prints the engines.
engines="$("$PYTHON" -m artwalk plan "$input" "$output" --preset "$preset" "${model_flag[@]}" \
    -S "$steps" -I "$sec_i" -F "$sec_f" --fps "$fps" --easing "$easing" --h "$height" --w "$width" \
    --fit "$fit" --seed "$seed" --target "$target" "${motion_engine[@]}" "${upscale_engine[@]}" \
    "${square[@]}" "${loop[@]}" "${quiet[@]}")"
read -r keyframe_engine motion_engine_name upscale_engine_name <<<"$engines"

"$PYTHON" -m diffusion_models "$input" "$output" --engine "$keyframe_engine" "${keyframe_model[@]}" \
    -S "$steps" --h "$height" --w "$width" --fit "$fit" --seed "$seed" "${square[@]}" "${loop[@]}" "${quiet[@]}"
"$PYTHON" -m frame_interpolation "$output" --engine "$motion_engine_name" "${motion_model[@]}" \
    -I "$sec_i" -F "$sec_f" --fps "$fps" --easing "$easing" "${loop[@]}" "${quiet[@]}"
"$PYTHON" -m super_resolution "$output" --engine "$upscale_engine_name" "${upscale_model[@]}" \
    --target "$target" "${quiet[@]}"
"$PYTHON" -m generate_videos "$output" --source upscaled "${audio[@]}" "${format[@]}" "${quiet[@]}"

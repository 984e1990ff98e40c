#!/usr/bin/env bash
# full_pipeline.sh: a folder of images -> a walk video, one stage at a time.
#
# Positional (ArtWalks' form):
#   bash full_pipeline.sh INPATH FOLDER_NAME OUTPATH S I F MODEL [h w] [flags]
#     reads INPATH/FOLDER_NAME, writes the run folder OUTPATH/FOLDER_NAME;
#     S in-betweens per pair, I seconds per motion segment, F seconds of hold,
#     MODEL the keyframe engine (kandinsky, unclip, sd, none; auto: the preset's),
#     h x w the walk size.
# Named:
#   bash full_pipeline.sh --input DIR --output OUT [flags]
#   bash full_pipeline.sh --prompts SCHEDULE --output OUT [flags]   a prompt walk
#   bash full_pipeline.sh --zoom PROMPTS --output OUT [flags]       an infinite zoom: the
#     levels (--levels-only, the GPU part), then the frames and video (--render); flags are
#     `artwalk zoom`'s (`python -m pipeline zoom --help`); --zoom --through FOLDER needs no PROMPTS
#
# The flags are those of `artwalk run` and `artwalk prompts`, each with its stage's default
# (`--help` lists them all): --preset auto|cpu|gpu, -S, -I, -F, --fps, --easing, --w, --h,
# --engine, --model, --motion-engine, --upscale-engine, --target, --loop, --audio, --format,
# --crf, --quiet, --interrogate, ... All but --executor and --track, which need the walk in
# one process: use `artwalk run` for those.
#
# `python -m pipeline plan` checks everything first (inputs, weights, soundtrack,
# paths, disk), writes OUT/walk.json, and says which arguments each stage gets: only
# the flags given here, plus the engines the preset chose. Then each stage is one
# `python -m` call on the same run folder; each caches its units, so rerunning after
# a crash or an edit only does what is missing.
set -euo pipefail

PYTHON="${PYTHON:-python}"

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }

input=""
output=""
prompts=0
zoom=0
zoom_prompts=()
rest=()
unforwarded=()
fail() { echo "error: full_pipeline.sh: $1 (see --help)" >&2; exit 2; }

if [[ $# -gt 0 && "$1" != -* ]]; then
    if [[ $# -lt 7 ]]; then fail "the positional form takes INPATH FOLDER_NAME OUTPATH S I F MODEL [h w]; got $# of 7"; fi
    input="$1/$2"; output="$3/$2"
    rest=(-S "$4" -I "$5" -F "$6")
    if [[ "$7" != "auto" ]]; then rest+=(--engine "$7"); fi
    shift 7
    if [[ $# -ge 1 && "$1" != -* ]]; then
        if [[ $# -lt 2 || "$2" == -* ]]; then fail "give both h and w after MODEL, or neither"; fi
        rest+=(--h "$1" --w "$2")
        shift 2
    fi
fi
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help)
            usage; echo
            if [[ "$zoom" == 1 || " $* " == *" --zoom"* ]]; then "$PYTHON" -m pipeline zoom --help
            else "$PYTHON" -m pipeline plan --help; fi
            exit 0 ;;
        --input|--output)
            if [[ $# -lt 2 ]]; then fail "$1 needs a folder"; fi
            if [[ "$1" == --input ]]; then input="$2"; else output="$2"; fi
            shift 2 ;;
        --input=*) input="${1#--input=}"; shift ;;
        --output=*) output="${1#--output=}"; shift ;;
        --prompts|--prompts=*) prompts=1; rest+=("$1"); shift ;;
        --zoom)
            zoom=1; shift
            if [[ $# -gt 0 && "$1" != -* ]]; then zoom_prompts=("$1"); shift; fi ;;
        --zoom=*) zoom=1; zoom_prompts=("${1#--zoom=}"); shift ;;
        --executor|--executor=*|--pool-workers|--pool-workers=*|--ray-*|--track|--track=*|--tracking-uri|--tracking-uri=*)
            unforwarded+=("${1%%=*}"); rest+=("$1"); shift ;;
        *) rest+=("$1"); shift ;;
    esac
done
if [[ "$zoom" == 0 && ${#unforwarded[@]} -gt 0 ]]; then
    # Each stage below is its own process: a walk's executor and its run record live in one.
    fail "${unforwarded[0]}: full_pipeline.sh runs each stage as its own process; run the walk with \`artwalk run\` (or \`artwalk prompts\`) for --executor and --track"
fi
if [[ "$zoom" == 1 ]]; then
    # Seed 003's two steps on one run folder: the levels (GPU), then the frames and video (CPU).
    if [[ -n "$input" || "$prompts" == 1 ]]; then fail "--zoom takes its levels from PROMPTS or --through FOLDER"; fi
    if [[ -z "$output" ]]; then fail "give the run folder with --output OUT"; fi
    "$PYTHON" -m pipeline zoom --levels-only ${rest[@]+"${rest[@]}"} -- ${zoom_prompts[@]+"${zoom_prompts[@]}"} "$output"
    common=()
    for flag in ${rest[@]+"${rest[@]}"}; do
        case "$flag" in -q|--quiet|-v|--verbose|--wait) common+=("$flag") ;; esac
    done
    exec "$PYTHON" -m pipeline zoom --render ${common[@]+"${common[@]}"} -- "$output"
fi
if [[ "$prompts" == 1 && -n "$input" ]]; then
    fail "give images (--input DIR or the positional form) or --prompts SCHEDULE, not both"
fi
if [[ "$prompts" == 0 && -z "$input" ]]; then
    fail "give the images with --input DIR (or use the positional form), or a schedule with --prompts FILE"
fi
if [[ -z "$output" ]]; then fail "give the run folder with --output OUT"; fi
source_args=()
if [[ -n "$input" ]]; then source_args=("$input"); fi

stage_args="$(mktemp)"
trap 'rm -f "$stage_args"' EXIT
plan() {
    "$PYTHON" -m pipeline plan ${rest[@]+"${rest[@]}"} --stage-args "$stage_args" -- \
        ${source_args[@]+"${source_args[@]}"} "$output" >/dev/null
}
plan

# Hold the run folder's lock for the whole walk, so no other run slips in between two
# stages. The stages, our children, see ARTWALK_LOCK_PID and work under it.
# The lock file is the plan's (made without following links); it is never written by its name,
# only through the descriptor, once that is checked to be this regular file: a symbolic link put
# in its place cannot make the driver write into another file.
if command -v flock >/dev/null 2>&1; then
    lock="$output/.artwalk.lock"
    if [[ -L "$lock" || ! -f "$lock" ]]; then fail "$lock: not a regular file, where the run folder's lock goes; remove it"; fi
    exec 9<>"$lock"
    if [[ -L "$lock" || "$(stat -c '%d:%i' -- "$lock")" != "$(stat -L -c '%d:%i' /dev/fd/9)" ]]; then
        fail "$lock: changed while it was opened; remove it and rerun"
    fi
    if ! flock -n 9; then
        holder="$(head -c 32 -- "$lock" | tr -d '\n ')"
        case " ${rest[*]-} " in
            *" --wait "*) echo "$output is in use by PID $holder; waiting for it (--wait)" >&2; flock 9 ;;
            *) echo "error: $output is in use by PID $holder: let it finish, or rerun with --wait" >&2; exit 75 ;;
        esac
    fi
    printf '%-31s\n' "$$" >&9  # over the previous holder's PID (padded: nothing of it is left), from offset 0
    export ARTWALK_LOCK_PID="$$"
fi

# The plan's answer: a status word, then for interrogate (none unless --interrogate) and each
# stage a count and that many arguments (NUL-separated).
words=()
read_words() {
    local n i word
    words=()
    IFS= read -r -d '' n <&3
    for ((i = 0; i < n; i++)); do
        IFS= read -r -d '' word <&3
        words+=("$word")
    done
}
exec 3<"$stage_args"
IFS= read -r -d '' status <&3
if [[ "$status" == "done" ]]; then exit 0; fi
read_words
if [[ ${#words[@]} -gt 0 ]]; then
    # --interrogate: write INPUT/desc.csv, then plan again so walk.json knows its prompts.
    "$PYTHON" -m pipeline interrogate "${words[@]}"
    exec 3<&-
    plan
    exec 3<"$stage_args"
    IFS= read -r -d '' status <&3
    if [[ "$status" == "done" ]]; then exit 0; fi
    read_words
fi
read_words; "$PYTHON" -m diffusion_models "${words[@]}"
read_words; "$PYTHON" -m frame_interpolation "${words[@]}"
read_words; if [[ ${#words[@]} -gt 0 ]]; then "$PYTHON" -m super_resolution "${words[@]}"; fi
read_words; "$PYTHON" -m generate_videos "${words[@]}"

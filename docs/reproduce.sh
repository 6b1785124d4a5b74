#!/usr/bin/env bash
# `make reproduce`: the real-art study of docs/results.md, from ../shared/data, with arttl commands only.
# Resumable: every run is a multirun job in a fixed folder with resume=true, so a finished run is
# skipped and an interrupted one continues from its last.ckpt. Re-run this script after a stop.
#   BUDGET=cpu (default, ~2 h on 2 cores) | gpu (every image, 224 px: the paper's scale; give it
#   its own OUT and DOCS, e.g. OUT=outputs/study_gpu DOCS=docs/results_gpu)
#   SEEDS=1,2,3  DATA=../shared/data  OUT=outputs/study  DOCS=docs/results  PY=.venv/bin/python
set -euo pipefail
BUDGET=${BUDGET:-cpu}
SEEDS=${SEEDS:-1,2,3}
DATA=${DATA:-../shared/data}
OUT=${OUT:-outputs/study}
DOCS=${DOCS:-docs/results}
PY=${PY:-.venv/bin/python}
LR=${LR:-0.003}   # SGD for fine_tune / partial / gradual (the paper: 1e-3; see docs/results.md)

missing=()
for need in wikiart224/train_val egypt224/train_val egypt224/metadata.csv ahe64/train_val; do
  [ -e "$DATA/$need" ] || missing+=("$DATA/$need")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: the study needs the shared real-art data, and these are missing:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  echo "It is the project's shared folder (../shared/data beside the checkout; its README says where each" >&2
  echo "collection comes from: WikiArt, the Met / Cleveland / Harvard / Chicago open-access images, AHE)." >&2
  echo "Point DATA=/path/to/data at another copy: make reproduce DATA=/path/to/data" >&2
  exit 2
fi
DATA=$(cd "$DATA" && pwd)
mkdir -p "$OUT" "$DOCS"
TIMES="$OUT/durations.csv"
[ -f "$TIMES" ] || echo "step,seconds,finished" > "$TIMES"

step() {  # step <label> <command...>: echo it, run it, record its wall time
  local label=$1; shift
  echo "== $label"
  echo "+ $*"
  local t0=$SECONDS
  "$@"
  echo "$label,$((SECONDS - t0)),$(date -u +%FT%TZ)" >> "$TIMES"
}
train() {  # train <preset> <overrides...>: one sweep, one folder per mode and seed, resumable
  local preset=$1; shift
  "$PY" -m arttl.train -m "+experiment=$preset" "budget=$BUDGET" \
    "dataset.root=$DATA/$(root_of "$preset")" \
    "hydra.sweep.dir=${SWEEP_DIR:-$OUT/$preset}" 'hydra.sweep.subdir=${mode.name}-seed${seed}' \
    resume=true save_stable_checkpoint=false "$@"
}
root_of() {
  case $1 in
    study_wikiart*) echo wikiart224/train_val ;;
    study_ahe*) echo ahe64/train_val ;;
    *) echo egypt224 ;;
  esac
}
SGD=(mode=fine_tune,partial,gradual "mode.optimizer.lr=$LR")
THETA_HAT_WIKIART="$OUT/study_wikiart/fine_tune-seed1/checkpoints/best.ckpt"
THETA_HAT_MET="$OUT/study_met/fine_tune-seed1/checkpoints/best.ckpt"

# 1. The two θ̂: ImageNet EfficientNet-Lite0 (θ) fine-tuned to early stopping on an art collection.
step "theta-hat WikiArt" train study_wikiart mode=fine_tune "mode.optimizer.lr=$LR" seed=1
MET_CAP=()  # the preset keeps 160 Met objects per type for the CPU budget; the GPU study takes all
[ "$BUDGET" = gpu ] && MET_CAP=(store.max_per_class=null)
step "theta-hat Met" train study_met mode=fine_tune "mode.optimizer.lr=$LR" seed=1 "${MET_CAP[@]}"
# 2. Table 2 on WikiArt itself: every mode from θ, and from scratch.
step "WikiArt grid" train study_wikiart "${SGD[@]}" "seed=$SEEDS"
step "WikiArt off-the-shelf + scratch" train study_wikiart mode=off_the_shelf,scratch "seed=$SEEDS"
# 3. The second collections from θ, from θ̂ and from scratch.
for target in study_objects study_ahe; do
  step "$target grid" train "$target" "${SGD[@]}" "seed=$SEEDS"
  step "$target off-the-shelf + scratch" train "$target" mode=off_the_shelf,scratch "seed=$SEEDS"
  step "$target from WikiArt grid" train "${target}_from_wikiart" "${SGD[@]}" "seed=$SEEDS" \
    "backbone.weights=$THETA_HAT_WIKIART"
  step "$target from WikiArt off-the-shelf" train "${target}_from_wikiart" mode=off_the_shelf \
    "seed=$SEEDS" "backbone.weights=$THETA_HAT_WIKIART"
done
step "study_objects from Met grid" train study_objects_from_met "${SGD[@]}" "seed=$SEEDS" \
  "backbone.weights=$THETA_HAT_MET"
step "study_objects from Met off-the-shelf" train study_objects_from_met mode=off_the_shelf \
  "seed=$SEEDS" "backbone.weights=$THETA_HAT_MET"

# 3b. Multi-task (the paper's future work): one network for the type, material and period of every
# museum's objects, and one network per task on the same store, split and test images (tasks=[...]).
for tasks in all type material period; do
  only=(); [ "$tasks" = all ] || only=("tasks=[$tasks]")
  SWEEP_DIR="$OUT/study_multitask/$tasks" step "multi-task study tasks=$tasks fine-tune" train \
    study_multitask mode=fine_tune "mode.optimizer.lr=$LR" "seed=$SEEDS" "${only[@]}"
  SWEEP_DIR="$OUT/study_multitask/$tasks" step "multi-task study tasks=$tasks off-the-shelf" train \
    study_multitask mode=off_the_shelf "seed=$SEEDS" "${only[@]}"
done

# 4. Tables and learning curves, written by arttl.report (the page includes these files).
# (its log and .hydra/ stay with the runs, not on the page)
report() { local out=$1; shift; rm -rf "${DOCS:?}/$out"; "$PY" -m arttl.report "$@" "out_dir=$DOCS/$out" "hydra.run.dir=$OUT/reports/$out"; }
step "report WikiArt" report wikiart "$OUT/study_wikiart"
step "report objects" report objects "$OUT/study_objects" "$OUT/study_objects_from_wikiart" "$OUT/study_objects_from_met"
step "report AHE" report ahe "$OUT/study_ahe" "$OUT/study_ahe_from_wikiart"
step "report museum source" report met "$OUT/study_met"
step "report multi-task" report multitask "$OUT/study_multitask"

# 5. Where θ and θ̂ look: paintings (θ̂ WikiArt-tuned) and objects (θ̂ Met-tuned), test images.
saliency() {
  local out=$1 ckpt=$2; shift 2
  rm -rf "${DOCS:?}/$out"
  "$PY" -m arttl.saliency "images=[$(IFS=,; echo "$*")]" "models=[imagenet,$ckpt]" \
    backbone=tf_efficientnet_lite0 "out_dir=$DOCS/$out" "hydra.run.dir=$OUT/saliency/$out"
}
test_image() {  # test_image <store> <class>: the first test-split image of that class (unseen by θ̂)
  awk -F, -v c="$2" '$3 == "test" && $2 == c { print $1; exit }' "data/prepared/$1/splits.csv"
}
step "saliency paintings" saliency saliency_paintings "$THETA_HAT_WIKIART" \
  "$(test_image study_wikiart Baroque)" "$(test_image study_wikiart Impressionism)" \
  "$(test_image study_wikiart Expressionism)"
step "saliency objects" saliency saliency_objects "$THETA_HAT_MET" \
  "$(test_image study_objects Statuary)" "$(test_image study_objects Pottery)" \
  "$(test_image study_objects Jewellery)"

# 6. One run per collection recomputed without arttl's data or metric code (h5py, timm, numpy);
# a multi-task run task by task.
step "spot check" "$PY" docs/spot_check.py --csv "$DOCS/spot_check.csv" \
  "$OUT/study_wikiart/fine_tune-seed2" "$OUT/study_objects/off_the_shelf-seed1" \
  "$OUT/study_objects_from_wikiart/partial-seed1" "$OUT/study_objects_from_met/fine_tune-seed3" \
  "$OUT/study_ahe/gradual-seed2" "$OUT/study_ahe_from_wikiart/fine_tune-seed1" \
  "$OUT/study_multitask/all/fine_tune-seed2" "$OUT/study_multitask/material/off_the_shelf-seed1"

# 7. The page: docs/results.md with every included file's current content.
cp "$TIMES" "$DOCS/durations.csv"
if [ "$DOCS" = docs/results ]; then
  "$PY" docs/build_results_page.py --results "$DOCS" --page docs/results.md
  echo "page: docs/results.md · tables and figures: $DOCS/ · runs: $OUT/"
else  # another budget or data: its own tables, the committed page is left as it is
  echo "tables and figures: $DOCS/*/report.md, $DOCS/saliency_*/ · runs: $OUT/"
fi

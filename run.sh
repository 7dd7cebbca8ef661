#!/usr/bin/env bash
# rnnt-kd recipe: data -> teacher -> (targets -> students) -> decode -> results.
#
#   ./run.sh                                  # the default recipe on the synthesised corpus
#   ./run.sh --stage 4 --stop-stage 5         # only train and decode the teacher
#   ./run.sh --corpus librispeech --librispeech-dir /data/LibriSpeech
#   ./run.sh --corpus kaldi --kaldi-dirs "data/kaldi/train data/kaldi/dev data/kaldi/test"
#   ./run.sh --quick true                     # every stage and paper table at toy size, in minutes (CI)
#   ./run.sh --help
#
# Each stage logs one line, leaves a .done marker, and is skipped when rerun (training resumes from its
# last checkpoint instead). --force true reruns finished data stages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0                   # first stage to run
stop_stage=100            # last stage to run
corpus=synth              # synth | librispeech | kaldi
size=default              # synthetic corpus size: a preset of kd/data/synth/plan.py (default, test, ...); other than default: data/synth_<size>, exp/synth_<size>
seed=42                   # seed of the synthetic corpus and of training
nj=2                      # parallel jobs for data stages
speed_perturb="0.9 1.1"   # stage 2: speed factors of the stored copies of the train part that the teacher trains on beside it ("": none)
student_jobs=0            # stages 7-8: students trained (decoded) at once, each on nproc / jobs threads, output in <exp dir>/train.log (decode.log) (0: 2 on a CPU with nproc >= 2 and bash >= 5.1, else 1)
vocab_size=0              # BPE vocabulary size (0: 32, i.e. letters, for synth; 256 for kaldi; 500 for librispeech)
librispeech_dir=download/LibriSpeech   # LibriSpeech root (with train-clean-100/ etc.)
librispeech_parts="train-clean-100 dev-clean dev-other test-clean test-other"   # train part, dev part, test parts
full_libri=false          # --corpus librispeech: train on all 960 h (the three train parts joined as train-960)
librispeech_unlabelled_parts=""   # LibriSpeech parts used as unlabelled audio, transcripts dropped (e.g. train-clean-360)
librilight_dir=download/librilight   # Libri-Light root (with small/ medium/ large/)
librilight_parts=""       # Libri-Light subsets used as unlabelled audio (small medium large)
kaldi_dirs=""             # --corpus kaldi: Kaldi data dirs, first is train, then dev, then test sets
teacher_config=""         # teacher YAML (default egs/<corpus>/conf/teacher.yaml)
students=""               # student rows: names in egs/<corpus>/conf/students/ or YAML paths (default: none and one KD row per paper, see below)
seeds=0                   # train every student row with N seeds (--seed, --seed + 1, ...: student_<row>_seed<s>); 0: once, student_<row>
tables=""                 # paper tables of egs/<corpus>/tables.yaml to run and print ("a c", or all); their rows replace --students
lm_config=""              # token LM YAML (default egs/<corpus>/conf/lm.yaml; stage 3 skips the LM if absent)
lm_text=""                # LM training text, one transcript per line, plain or .gz (default: synth's <corpus>/lm-text.txt.gz, else the training transcripts; any size: tokenised once to disk, e.g. librispeech-lm-norm.txt)
lm_scale=0.45             # shallow-fusion weight of the LM in an extra beam-search decode (0: none; 0.45 on the synthetic dev set: egs/synth/RESULTS.md)
lm_blank_penalty=1        # blank penalty of that decode (offsets the LM's cost of every token; 1 on the synthetic dev set)
targets_lm_scale=0        # stage 6: LM weight of a second, LM-fused set of unlabelled targets (exp/<corpus>/teacher/targets_lm/, row one_best_lm); the plain set never has the LM (0: no fused set)
targets_blank_penalty=0   # stage 6: blank penalty in the LM-fused search (offsets the LM's cost of every token against blank)
target_types="pruned pxpy one_best hyp enc_logits"   # teacher targets to generate
topk=8                    # teacher classes kept per lattice node / frame in the stored targets
nst_iterations=0          # stage 10: Noisy Student rounds (teacher -> student -> next teacher); 0: off
nst_min_hyp_score=-1.0    # stage 10: pseudo-labels below this log-prob per frame are dropped
nst_student=hard          # stage 10: the student row trained in each round (its unlabelled cuts: the pseudo-labels)
decode_methods="greedy_search modified_beam_search"   # decoding methods
max_sym_per_frame=0       # tokens per encoder frame at most, in every search (decodes, stage 6's hypotheses; 0: 2 with synth's default letters, else 1)
teacher_avg=3             # teacher checkpoints averaged (last N epochs) for its decoding, its targets and the first NST round
avg=0                     # student checkpoints averaged for their decoding and export (0: 2, or 1 with --quick, whose students train 1 epoch)
device=auto               # auto | cpu | cuda
force=false               # rerun finished data stages
exp_dir=""                # experiment directory (default exp/<corpus>; give another one for another --vocab-size or teacher)
quick=false               # reduced-size profile (CI): --size test, toy models of egs/synth/quick/, all paper tables (unless --tables/--students), LM-fused targets (--targets-lm-scale 0.3), one NST round; in data/synth_quick, exp/synth_quick

help_message="Usage: ./run.sh [options]   (stages: 0 corpus, 1 manifests, 2 fbank, 3 bpe + token LM, 4 train teacher, 5 decode teacher, 6 teacher targets, 7 distil students, 8 decode students, 9 export the best student, 10 Noisy Student Training)"
. utils/parse_options.sh

if $quick; then
  [ "$corpus" = synth ] || { echo "run.sh: --quick true runs the synthetic corpus only (not --corpus $corpus)" >&2; exit 1; }
  size=test
  # sentencepiece makes at most ~130 pieces from the test corpus' 30 transcripts (not the default 256).
  [ "$vocab_size" -gt 0 ] || vocab_size=48
  [ -n "$tables$students" ] || tables=all
  [ "$nst_iterations" -gt 0 ] || nst_iterations=1
  # table (c)'s row one_best_lm trains on the LM-fused unlabelled targets
  [ "$targets_lm_scale" != 0 ] || targets_lm_scale=0.3
  [ "$avg" -gt 0 ] || avg=1
fi
# Averaging the last epochs gains 3-6 absolute WER on the synthetic corpus (egs/synth/RESULTS.md).
[ "$avg" -gt 0 ] || avg=2
# The main job: the student without KD and one KD student per paper of METHODS.md, (a) to (e); the longest to
# train first, so that stage 7's side-by-side jobs end close together.
[ -n "$students" ] || students="cascaded_kd_stored soft_lattice one_best sparse60_collapsed encoder_logits none"

bash tools/install.sh
. ./path.sh

log() { echo "$(date '+%F %T') [run.sh] $*"; }

case "$corpus" in
  synth)
    corpus_dir=download/synth-$size
    labelled_parts="train dev test"; source_unlabelled_parts="unlabelled" ;;
  librispeech)
    corpus_dir=$librispeech_dir
    labelled_parts=$librispeech_parts
    source_unlabelled_parts=$(echo $librispeech_unlabelled_parts $librilight_parts) ;;
  kaldi)
    [ -n "$kaldi_dirs" ] || { echo "run.sh: --corpus kaldi needs --kaldi-dirs \"train_dir dev_dir ...\"" >&2; exit 1; }
    corpus_dir=""
    labelled_parts=$(for d in $kaldi_dirs; do basename "$d"; done)
    source_unlabelled_parts="" ;;
  *) echo "run.sh: unknown --corpus $corpus (synth | librispeech | kaldi)" >&2; exit 1 ;;
esac
if [ "$corpus" != librispeech ] && { $full_libri || [ -n "$librispeech_unlabelled_parts$librilight_parts" ]; }; then
  echo "run.sh: --full-libri, --librispeech-unlabelled-parts and --librilight-parts need --corpus librispeech" >&2
  exit 1
fi
labelled_parts=$(echo $labelled_parts)
read -r train_part dev_parts _ <<< "$labelled_parts"
[ -n "$dev_parts" ] || { echo "run.sh: need a train and a dev part (then test parts), got '$labelled_parts'" >&2; exit 1; }
test_parts=${labelled_parts#* }
# Later stages see one train part and at most one unlabelled part (a training config takes one CutSet of each);
# stage 2 joins several parts on disk into train-960 or unlabelled.
source_train_parts=$train_part
if $full_libri; then source_train_parts="train-clean-100 train-clean-360 train-other-500"; train_part=train-960; fi
unlabelled_parts=$source_unlabelled_parts
[ "$(wc -w <<< "$source_unlabelled_parts")" -le 1 ] || unlabelled_parts=unlabelled
source_parts=$(echo $source_train_parts $test_parts $source_unlabelled_parts)
dup=$(echo $source_parts | tr ' ' '\n' | sort | uniq -d | tr '\n' ' ')
[ -z "$dup" ] || { echo "run.sh: part name(s) used twice: $dup(Kaldi dirs are named by their basename)" >&2; exit 1; }
# check_joined NAME SOURCE...: the part joined from SOURCEs must not share its name with a part on disk.
check_joined() {
  local name=$1; shift
  if [ "$*" != "$name" ] && [[ " $source_parts " == *" $name "* ]]; then
    echo "run.sh: the part name '$name' is taken by the part joined from $*; rename that part" >&2; exit 1
  fi
}
check_joined "$train_part" $source_train_parts
[ -z "$unlabelled_parts" ] || check_joined "$unlabelled_parts" $source_unlabelled_parts
if [ "$vocab_size" -le 0 ]; then
  # The synthetic corpus' blank plateau is shortest with letters (egs/synth/RESULTS.md: 32 vs 64 vs 256 pieces).
  # Letters come at up to ~0.9 per 40 ms encoder frame: one token per frame deletes some (RESULTS.md).
  case "$corpus" in
    synth) vocab_size=32; [ "$max_sym_per_frame" != 0 ] || max_sym_per_frame=2 ;;
    librispeech) vocab_size=500 ;;
    *) vocab_size=256 ;;
  esac
fi
[ "$max_sym_per_frame" != 0 ] || max_sym_per_frame=1
conf=egs/$corpus/conf
# The quick profile's students/ links to conf/students: the very rows, built on the toy configs beside the link.
if $quick; then conf=egs/$corpus/quick; fi
# A Kaldi corpus without configs of its own gets the synthetic corpus' small CPU models.
if [ "$corpus" = kaldi ] && [ ! -d "$conf" ]; then conf=egs/synth/conf; fi
[ -n "$teacher_config" ] || teacher_config=$conf/teacher.yaml
[ -n "$lm_config" ] || lm_config=$conf/lm.yaml
# row_config ROW: the YAML of a student row (a name in $conf/students/ or a path).
row_config() { case "$1" in *.yaml|*/*) echo "$1" ;; *) echo "$conf/students/$1.yaml" ;; esac; }
# row_files ROW: the row's YAML and its `base:` chain (each relative to the file before it, as kd/config.py
# reads it: without following symlinks).
row_files() {
  local f n=0 base
  f=$(row_config "$1")
  while [ -n "$f" ] && [ "$n" -lt 32 ]; do  # kd/config.py reports a chain that loops
    echo "$f"
    base=$(sed -n 's/^base: *//p' "$f")
    if [ -n "$base" ]; then f=$(realpath -s -m --relative-to=. "$(dirname "$f")/$base"); else f=""; fi
    n=$((n + 1))
  done
}
# row_teachers ROW: the rows whose models ROW learns from (kd.teacher: ${KD_EXP}/student_<row>...).
row_teachers() {
  cat $(row_files "$1") | grep -o '{KD_EXP}/student_[A-Za-z0-9_]*' | sed 's|.*/student_||' | sort -u || true
}
tables_file=$conf/../tables.yaml
if [ -n "$tables" ]; then
  students=$(python -m kd.bin.report . --tables "$tables_file" --names $tables --rows)
fi
if [ "$stage" -le 10 ] && [ "$stop_stage" -ge 7 ]; then
  for r in $students $nst_student; do
    [ -f "$(row_config "$r")" ] || { echo "run.sh: no student row '$r': $(row_config "$r") not found" >&2; exit 1; }
  done
  # A row that learns from another row's model trains after it (stage 7 waits for that job).
  listed=" "
  for r in $students; do
    for t in $(row_teachers "$r"); do
      for later in $students; do
        if [ "$(basename "$later" .yaml)" = "$t" ] && [[ "$listed" != *" $t "* ]]; then
          echo "run.sh: row '$r' learns from row '$t' (its kd.teacher): list '$t' before '$r'" >&2
          exit 1
        fi
      done
    done
    listed+="$(basename "$r" .yaml) "
  done
fi

data=data/$corpus
exp=exp/$corpus
if $quick; then data=data/${corpus}_quick; exp=exp/${corpus}_quick
elif [ "$corpus" = synth ] && [ "$size" != default ]; then data=data/synth_$size; exp=exp/synth_$size; fi
[ -z "$exp_dir" ] || exp=$exp_dir
lang=$data/lang_bpe_$vocab_size
mkdir -p "$data" "$exp"

# run_stage N NAME: true when stage N is selected and not already done.
run_stage() {
  local n=$1 name=$2
  [ "$stage" -le "$n" ] && [ "$stop_stage" -ge "$n" ] || return 1
  if [ -f "$data/.$name.done" ] && ! $force; then
    log "stage $n ($name): already done ($data/.$name.done), skipping"
    return 1
  fi
  log "stage $n: $name"
  return 0
}
mark_done() { touch "$data/.$1.done"; }

# --force true also makes the stage tools redo outputs they would otherwise keep.
force_opt=()
if $force; then force_opt=(--force); fi

# join_cuts NAME PART...: the cuts of PARTs (stage 2's output) as one manifest, part NAME.
join_cuts() {
  local out=$data/fbank/${corpus}_cuts_$1.jsonl.gz; shift
  lhotse combine $(for p in "$@"; do echo "$data/fbank/${corpus}_cuts_$p.jsonl.gz"; done) "$data/fbank/.tmp.${out##*/}"
  mv "$data/fbank/.tmp.${out##*/}" "$out"
  log "stage 2: joined $* into $out"
}

if run_stage 0 corpus; then
  case "$corpus" in
    synth) python -m kd.bin.make_synth_corpus --out "$corpus_dir" --size "$size" --seed "$seed" --nj "$nj" ;;
    librispeech)
      missing=$(for p in $source_train_parts $test_parts $librispeech_unlabelled_parts; do
        [ -d "$corpus_dir/$p" ] || echo "$p"; done)
      if [ -n "$missing" ]; then
        # local/download_librispeech.sh unpacks into <dir>/LibriSpeech/.
        [ "$(basename "$corpus_dir")" = LibriSpeech ] || {
          echo "run.sh: $corpus_dir lacks $(echo $missing); give --librispeech-dir .../LibriSpeech to download them" >&2
          exit 1; }
        bash local/download_librispeech.sh "$(dirname "$corpus_dir")" $missing
      fi
      for p in $librilight_parts; do
        [ -d "$librilight_dir/$p" ] || {
          echo "run.sh: $librilight_dir/$p not found; unpack https://dl.fbaipublicfiles.com/librilight/data/$p.tar" \
            "into $librilight_dir (or give --librilight-dir)" >&2; exit 1; }
      done ;;
    kaldi) for d in $kaldi_dirs; do [ -f "$d/wav.scp" ] || { echo "run.sh: $d/wav.scp not found" >&2; exit 1; }; done ;;
  esac
  mark_done corpus
fi

if run_stage 1 manifests; then
  manifest_opts=(--prefix "$corpus" --output-dir "$data/manifests" --nj "$nj" "${force_opt[@]}")
  case "$corpus" in
    synth)
      python -m kd.bin.prepare_manifests librispeech --corpus-dir "$corpus_dir" --parts $labelled_parts \
        --unlabelled-parts $source_unlabelled_parts "${manifest_opts[@]}" ;;
    librispeech)
      python -m kd.bin.prepare_manifests librispeech --corpus-dir "$corpus_dir" --parts $source_train_parts \
        $test_parts --unlabelled-parts $librispeech_unlabelled_parts "${manifest_opts[@]}"
      if [ -n "$librilight_parts" ]; then
        python -m kd.bin.prepare_manifests librilight --corpus-dir "$librilight_dir" --parts $librilight_parts \
          "${manifest_opts[@]}"
      fi ;;
    kaldi)
      for d in $kaldi_dirs; do
        python -m kd.bin.prepare_manifests kaldi --data-dir "$d" --part "$(basename "$d")" "${manifest_opts[@]}"
      done ;;
  esac
  mark_done manifests
fi

if run_stage 2 fbank; then
  python -m kd.bin.compute_fbank --manifest-dir "$data/manifests" --prefix "$corpus" --parts $source_parts \
    --output-dir "$data/fbank" --nj "$nj" "${force_opt[@]}"
  python -m kd.bin.validate_manifests \
    --cuts $(for p in $source_parts; do echo "$data/fbank/${corpus}_cuts_$p.jsonl.gz"; done)
  [ "$source_train_parts" = "$train_part" ] || join_cuts "$train_part" $source_train_parts
  [ "$source_unlabelled_parts" = "$unlabelled_parts" ] || join_cuts "$unlabelled_parts" $source_unlabelled_parts
  mark_done fbank
fi
# The teacher trains on the train part and its speed-perturbed copies; the students, whose targets the teacher
# makes per cut, on the part alone.
teacher_train_cuts=$data/fbank/${corpus}_cuts_${train_part}.jsonl.gz
if [ -n "$speed_perturb" ]; then
  teacher_train_cuts=$data/fbank/${corpus}_cuts_${train_part}_sp.jsonl.gz
  if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    log "stage 2: speed perturbation $speed_perturb of $train_part"
    python -m kd.bin.perturb_speed --fbank-dir "$data/fbank" --prefix "$corpus" --part "$train_part" \
      --factors $speed_perturb --nj "$nj" "${force_opt[@]}"
  fi
fi

if run_stage 3 "bpe_$vocab_size"; then
  python -m kd.bin.train_bpe --cuts "$data/fbank/${corpus}_cuts_${train_part}.jsonl.gz" \
    --vocab-size "$vocab_size" --output-dir "$lang" "${force_opt[@]}"
  mark_done "bpe_$vocab_size"
fi

# Training stages resume from their own checkpoints, so they carry no .done marker. The configs name their
# data through these variables (egs/synth/conf/*.yaml: paths.train_cuts: ${KD_TRAIN_CUTS}, ...).
targets=$exp/teacher/targets
targets_lm=$exp/teacher/targets_lm
export KD_EXP=$exp KD_TEACHER=$exp/teacher KD_BPE_MODEL=$lang/bpe.model
export KD_TRAIN_CUTS=$data/fbank/${corpus}_cuts_${train_part}.jsonl.gz
export KD_VALID_CUTS=$data/fbank/${corpus}_cuts_${dev_parts%% *}.jsonl.gz
export KD_TRAIN_TARGETS=$targets/${corpus}_${train_part}_targets.jsonl.gz
export KD_UNLABELLED_TARGETS=""
[ -z "$unlabelled_parts" ] || KD_UNLABELLED_TARGETS=$targets/${corpus}_${unlabelled_parts}_targets.jsonl.gz
run_overrides=("train.seed=$seed" "train.device=$device")
test_cuts=$(for p in $test_parts; do echo "$data/fbank/${corpus}_cuts_$p.jsonl.gz"; done)
lm_opts=()
if [ -f "$lm_config" ]; then lm_opts=(--lm-exp "$exp/lm"); fi
# Stage 6 makes the LM-fused unlabelled targets when there is an LM and --targets-lm-scale is not 0; a set it
# made before is found without the option. Rows that train on them fail clearly without them.
fuse_targets=false
if [ -n "$unlabelled_parts" ] && [ ${#lm_opts[@]} -gt 0 ] && [ "$targets_lm_scale" != 0 ]; then
  fuse_targets=true
fi
export KD_UNLABELLED_TARGETS_LM=""
if [ -n "$unlabelled_parts" ]; then
  fused=$targets_lm/${corpus}_${unlabelled_parts}_targets.jsonl.gz
  if $fuse_targets || [ -f "$fused" ]; then KD_UNLABELLED_TARGETS_LM=$fused; fi
fi
if [ -z "$KD_UNLABELLED_TARGETS_LM" ] && [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  for r in $students; do
    if grep -q KD_UNLABELLED_TARGETS_LM "$(row_config "$r")"; then
      echo "run.sh: row '$r' trains on LM-fused unlabelled targets, which stage 6 makes only with" \
        "--targets-lm-scale W (not 0), a token LM ($lm_config) and unlabelled audio" >&2
      exit 1
    fi
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ] && [ -f "$lm_config" ]; then
  log "stage 3: token LM ($lm_config -> $exp/lm)"
  if $force; then rm -rf "$exp/lm"; fi  # the BPE model may have been retrained
  # The synthetic corpus writes the sentences it could have read but for dev, test and unlabelled: 3x the
  # training transcripts, a lower dev perplexity for the same LM training time (egs/synth/RESULTS.md).
  if [ -z "$lm_text" ] && [ "$corpus" = synth ]; then
    lm_text=$corpus_dir/lm-text.txt.gz
    [ -f "$lm_text" ] || { echo "run.sh: $lm_text not found: run stage 0 again (the corpus builder writes it)" >&2; exit 1; }
  fi
  lm_train=(--train-cuts "$KD_TRAIN_CUTS")
  if [ -n "$lm_text" ]; then lm_train=(--train-text "$lm_text"); fi
  python -m kd.bin.train_lm --config "$lm_config" "${lm_train[@]}" --valid-cuts "$KD_VALID_CUTS" \
    --bpe-model "$KD_BPE_MODEL" --exp-dir "$exp/lm" "device=$device"
fi

# decode EXP_DIR AVG [THREADS]: every decoding method on the test parts, and beam search with the LM when there is
# one (on THREADS torch threads; default: torch's). One process: the methods share each batch's encoder forward.
decode() {
  local methods=($decode_methods) fusion=()
  if [ ${#lm_opts[@]} -gt 0 ] && [ "$lm_scale" != 0 ]; then
    methods+=(modified_beam_search_lm_shallow_fusion)
    fusion=("${lm_opts[@]}" --lm-scale "$lm_scale" --lm-blank-penalty "$lm_blank_penalty")
  fi
  python -m kd.bin.decode --exp-dir "$1" --avg "$2" --methods "${methods[@]}" "${fusion[@]}" --device "$device" \
    --max-sym-per-frame "$max_sym_per_frame" --num-threads "${3:-0}" --cuts $test_cuts
}
# The greedy decode the tables show and stage 9 picks the best student by (kd.bin.decode's result tag).
greedy_tag=greedy_search
[ "$max_sym_per_frame" = 1 ] || greedy_tag=greedy_search_max_sym_$max_sym_per_frame
report() { python -m kd.bin.report "$exp" --out "$exp/results.md" --plot "$exp/wer.png"; }

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: train teacher ($teacher_config -> $exp/teacher)"
  python -m kd.bin.train --config "$teacher_config" --exp-dir "$exp/teacher" "${run_overrides[@]}" \
    "paths.train_cuts=$teacher_train_cuts" "paths.valid_cuts=$KD_VALID_CUTS" "paths.bpe_model=$KD_BPE_MODEL"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: decode teacher ($decode_methods)"
  decode "$exp/teacher" "$teacher_avg"
  report
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "stage 6: teacher targets ($target_types, top-$topk) -> $targets"
  # Reruns finish unfinished shards only; a finished set is kept.
  for p in $train_part $unlabelled_parts; do
    python -m kd.bin.generate_targets --exp-dir "$exp/teacher" --avg "$teacher_avg" \
      --cuts "$data/fbank/${corpus}_cuts_$p.jsonl.gz" --out-dir "$targets" --types $target_types \
      --topk "$topk" --max-sym-per-frame "$max_sym_per_frame" --nj "$nj" --device "$device"
  done
  if [ "$targets_lm_scale" != 0 ] && ! $fuse_targets; then
    echo "run.sh: --targets-lm-scale needs unlabelled audio and the token LM of stage 3 ($lm_config)" >&2
    exit 1
  fi
  if $fuse_targets; then
    # The unlabelled part once more, its hypotheses searched with the LM fused: a second set beside the plain
    # one, so the rows with and without fusion (one_best, one_best_lm) train from one stage 6.
    log "stage 6: LM-fused targets of $unlabelled_parts (LM weight $targets_lm_scale, blank penalty" \
      "$targets_blank_penalty) -> $targets_lm"
    python -m kd.bin.generate_targets --exp-dir "$exp/teacher" --avg "$teacher_avg" \
      --cuts "$data/fbank/${corpus}_cuts_$unlabelled_parts.jsonl.gz" --out-dir "$targets_lm" \
      --types one_best hyp --topk "$topk" --max-sym-per-frame "$max_sym_per_frame" --nj "$nj" --device "$device" \
      "${lm_opts[@]}" \
      --lm-scale "$targets_lm_scale" --blank-penalty "$targets_blank_penalty"
  fi
fi

# The experiment dirs of the student rows, one per row and seed.
student_seeds=""
[ "$seeds" -eq 0 ] || student_seeds=$(seq "$seed" $((seed + seeds - 1)))
student_dirs=()
for r in $students; do
  name=$(basename "$r" .yaml)
  if [ -z "$student_seeds" ]; then student_dirs+=("$exp/student_$name:$r:$seed"); continue; fi
  for s in $student_seeds; do student_dirs+=("$exp/student_${name}_seed$s:$r:$s"); done
done

# Stages 7 and 8 run one job per student row and seed. On a CPU --student-jobs of them run side by side, each
# on nproc / jobs threads with its output in a log in its experiment dir: small models use two cores poorly,
# so two 1-thread students train ~1.4x the frames of one on 2 threads (BENCHMARKS.md), and two 1-thread
# decodes take ~1.4x less time than one after the other on 2 threads.
if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 7 ]; then
  # wait -n -p (which job ended) is bash 5.1's
  new_bash=$(( BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1) ))
  if [ "$student_jobs" -eq 0 ]; then
    student_jobs=1
    if [ "$new_bash" = 1 ] && [ "$device" != cuda ] && [ "$(nproc)" -ge 2 ] && \
      ! python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
      student_jobs=2
    fi
  elif [ "$student_jobs" -gt 1 ] && [ "$new_bash" = 0 ]; then
    echo "run.sh: --student-jobs $student_jobs needs bash >= 5.1 (this is $BASH_VERSION); use --student-jobs 1" >&2
    exit 1
  fi
  threads=$(( $(nproc) / student_jobs )); [ "$threads" -ge 1 ] || threads=1
  # The running jobs: pid -> "stage N: what" and its experiment dir and log.
  declare -A job_what=() job_log=()
  # Each job is a process group of its own (set -m when it starts), so that stopping it stops every process
  # it started. Ctrl-C reaches run.sh alone: without the trap the jobs would run on, and a rerun would race
  # them.
  stop_jobs() { local pid; for pid in "${!job_what[@]}"; do kill -- "-$pid" 2>/dev/null || true; done; }
  wait_one() {
    local pid status=0
    wait -n -p pid "${!job_what[@]}" || status=$?
    local what=${job_what[$pid]} log_file=${job_log[$pid]}
    unset "job_what[$pid]" "job_log[$pid]"
    if [ "$status" -ne 0 ]; then
      echo "run.sh: $what $(dirname "$log_file") failed (exit $status); the end of its $log_file:" >&2
      tail -n 20 "$log_file" >&2
      exit 1
    fi
  }
  # start_job WHAT LOG FUNC ENTRY: FUNC ENTRY THREADS in the background once a slot is free (its output in
  # <dir>/LOG, dir being the entry's first field).
  start_job() {
    [ ${#job_what[@]} -lt "$student_jobs" ] || wait_one
    set -m
    "$3" "$4" "$threads" &
    set +m
    job_what[$!]=$1
    job_log[$!]=${4%%:*}/$2
  }
  # job_running DIR: whether a job of that experiment dir runs.
  job_running() { [[ " ${job_log[*]} " == *" $1/"* ]]; }
  wait_all() { while [ ${#job_what[@]} -gt 0 ]; do wait_one; done; }
  trap 'stop_jobs; exit 130' INT TERM
  trap stop_jobs EXIT
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  # train_student ENTRY [THREADS]: one row and seed. With THREADS it is a background job: it becomes the
  # training process (so that killing the job kills the training) and writes to <dir>/train.log.
  train_student() {
    local dir row s
    IFS=: read -r dir row s <<< "$1"
    local cmd=(python -m kd.bin.train --config "$(row_config "$row")" --exp-dir "$dir" "train.seed=$s"
      "train.device=$device" "kd.max_sym_per_frame=$max_sym_per_frame")
    # A row that learns from a teacher row takes the teacher of its own seed (${KD_SEED_SUFFIX:-} in its YAML).
    export KD_SEED_SUFFIX=""
    [ -z "$student_seeds" ] || KD_SEED_SUFFIX=_seed$s
    if [ -z "${2:-}" ]; then
      log "stage 7: student $row (seed $s) -> $dir"
      "${cmd[@]}"
      return
    fi
    log "stage 7: student $row (seed $s) -> $dir (torch threads $2, output in $dir/train.log)"
    mkdir -p "$dir"
    exec "${cmd[@]}" "train.num_threads=$2" > "$dir/train.log" 2>&1
  }
  if [ "$student_jobs" -le 1 ] || [ ${#student_dirs[@]} -le 1 ]; then
    for entry in "${student_dirs[@]}"; do train_student "$entry"; done
  else
    for entry in "${student_dirs[@]}"; do
      IFS=: read -r _ row s <<< "$entry"
      for t in $(row_teachers "$row"); do
        t_dir=$exp/student_$t
        [ -z "$student_seeds" ] || t_dir+=_seed$s
        while job_running "$t_dir"; do wait_one; done
      done
      start_job "stage 7: training" train.log train_student "$entry"
    done
    wait_all
  fi
fi

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  # decode_student ENTRY [THREADS]: as train_student, its output in <dir>/decode.log with THREADS.
  decode_student() {
    local dir
    IFS=: read -r dir _ _ <<< "$1"
    if [ -z "${2:-}" ]; then
      log "stage 8: decode $dir ($decode_methods)"
      decode "$dir" "$avg"
      return
    fi
    log "stage 8: decode $dir ($decode_methods, torch threads $2, output in $dir/decode.log)"
    mkdir -p "$dir"  # a row not trained: kd.bin.decode's error goes to the log
    decode "$dir" "$avg" "$2" > "$dir/decode.log" 2>&1
  }
  if [ "$student_jobs" -le 1 ] || [ ${#student_dirs[@]} -le 1 ]; then
    for entry in "${student_dirs[@]}"; do decode_student "$entry"; done
  else
    for entry in "${student_dirs[@]}"; do start_job "stage 8: decoding" decode.log decode_student "$entry"; done
    wait_all
  fi
  report
  # Every paper table of the corpus, with the rows not trained yet marked "not run".
  if [ -f "$tables_file" ]; then
    python -m kd.bin.report "$exp" --tables "$tables_file" --names ${tables:-all} \
      ${student_seeds:+--seeds $student_seeds} --method "$greedy_tag" --out "$exp/tables.md"
  fi
fi
if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 7 ]; then trap - INT TERM EXIT; fi

if [ "$stage" -le 9 ] && [ "$stop_stage" -ge 9 ]; then
  best=$(python -m kd.bin.report $(for e in "${student_dirs[@]}"; do echo "${e%%:*}"; done) \
    --best "${test_parts##* }" "$greedy_tag")
  log "stage 9: export the best student ($best) to ONNX and decode ${test_parts##* } with onnxruntime"
  python -m kd.bin.export --exp-dir "$best" --avg "$avg" --out-dir "$best/onnx" --int8
  for variant in "" --int8; do
    python -m kd.bin.infer --model-dir "$best/onnx" --bpe-model "$lang/bpe.model" $variant \
      --max-sym-per-frame "$max_sym_per_frame" \
      --cuts "$data/fbank/${corpus}_cuts_${test_parts##* }.jsonl.gz"
  done
fi

if [ "$stage" -le 10 ] && [ "$stop_stage" -ge 10 ] && [ "$nst_iterations" -gt 0 ]; then
  # Noisy Student Training (METHODS.md (d)): each round's student (row --nst-student, trained with its noise:
  # SpecAugment and dropout) learns from the labelled data plus the previous teacher's confident
  # pseudo-labels, and becomes the next round's teacher.
  [ -n "$unlabelled_parts" ] || { echo "run.sh: stage 10 needs unlabelled audio" >&2; exit 1; }
  nst_teacher=$exp/teacher nst_avg=$teacher_avg
  for i in $(seq 1 "$nst_iterations"); do
    round=$exp/nst_$i
    log "stage 10: Noisy Student round $i: pseudo-labels from $nst_teacher -> $round"
    for p in $train_part $unlabelled_parts; do
      python -m kd.bin.generate_targets --exp-dir "$nst_teacher" --avg "$nst_avg" \
        --cuts "$data/fbank/${corpus}_cuts_$p.jsonl.gz" --out-dir "$round/targets" --types hyp --nj "$nj" \
        --max-sym-per-frame "$max_sym_per_frame" --device "$device"
    done
    KD_TRAIN_TARGETS=$round/targets/${corpus}_${train_part}_targets.jsonl.gz \
      KD_UNLABELLED_TARGETS=$round/targets/${corpus}_${unlabelled_parts}_targets.jsonl.gz \
      python -m kd.bin.train --config "$(row_config "$nst_student")" --exp-dir "$round" "${run_overrides[@]}" \
      "kd.min_hyp_score=$nst_min_hyp_score" "kd.max_sym_per_frame=$max_sym_per_frame" data.spec_augment=true
    decode "$round" "$avg"
    nst_teacher=$round nst_avg=$avg
  done
  report
fi

log "finished stages $stage..$stop_stage"

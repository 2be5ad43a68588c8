#!/usr/bin/env bash
# Rewrite every report in Results/ from the committed run folders (and the local checkpoints, which
# scripts/eval_decoding.py needs unless each run's decoding_eval.json is already there), then
# Results/README.md. Run from the repository root: bash scripts/reports.sh
set -euo pipefail

# the four-dataset table: the README command with today's defaults on every dataset, TIN and
# cross-attention (4 heads); 14res's runs come from the every-fusion sweep below, the others from the
# same sweep command on 14lap, 15res and 16res
python scripts/summarize.py "Results/*/spans-tin-seed*" "Results/*/spans-cross_attention-h4-seed*" --pool_commits \
    --out Results/datasets.md --plot Results/datasets.png \
    --title "Four datasets with today's defaults: the README command (20 epochs, offline encoder), TIN and cross-attention (4 heads), seeds 42, 1, 2"

# the spans runs retrain the final runs exactly (they differ only in the decoding that chose the epoch)
python scripts/same_training.py "Results/*/spans-*" --new spans --old final --out Results/same_training.md

# the decoding default, chosen on dev over the final runs
FINAL=()
for d in 14res 14lap 15res 16res; do for f in tin cross_attention-h4; do FINAL+=("Results/$d/final-$f-seed*"); done; done
FINAL+=("Results/14res/final-cross_attention-h8-seed*" "Results/14res/final-lightweight-h4-seed*")
python scripts/eval_decoding.py "${FINAL[@]}" --out Results/decoding_final.md

# epoch budget and attention dropout at the final budget (all runs seen with one decoding)
python scripts/summarize.py "Results/14res/final-tin-seed*" "Results/14res/ep30-tin-seed*" \
    "Results/14res/final-cross_attention-h4-seed*" "Results/14res/ad0-cross_attention-h4-seed*" \
    --decoding triplets --pool_commits --out Results/final_budget.md --plot Results/final_budget.png \
    --title "Epoch budget (TIN, 20 vs 30 epochs) and attention dropout (cross-attention, 0.1 vs 0.0), 14res: epochs chosen on dev with the triplets decoding"
python scripts/summarize.py "Results/14res/spans-tin-seed*" "Results/14res/ep30-tin-seed*" \
    "Results/14res/spans-cross_attention-h4-seed*" "Results/14res/ep30-cross_attention-h4-seed*" \
    "Results/14res/ad0-cross_attention-h4-seed*" \
    --pool_commits --out Results/final_budget_spans.md --plot Results/final_budget_spans.png \
    --title "Epoch budget (TIN and cross-attention with 4 heads, 20 vs 30 epochs) and attention dropout (cross-attention, 0.1 vs 0.0), 14res, with today's decoding (spans)"

# 14res, every fusion with today's defaults (the spans decoding chose each run's epoch)
python scripts/summarize.py "Results/14res/spans-*" --out Results/fusions_14res.md --plot Results/fusions_14res.png \
    --title "14res, every fusion with today's defaults: the README command (20 epochs, offline encoder), seeds 42, 1, 2"

# the fusion module's own learning rate (cross-attention 4 heads, 10 epochs, seen with decoding none as the ob- runs)
python scripts/summarize.py "Results/14res/ob-cross_attention-h4-seed*" "Results/14res/flr*-cross_attention-h4-seed*" \
    --decoding none --out Results/fusion_lr.md --plot Results/fusion_lr.png \
    --title "Cross-attention (4 heads) with its own learning rate (--fusion_lr; default --task_lr 3e-4), 14res, 10 epochs, epochs chosen with decoding none"

# the accuracy study (mostly 10 epochs) and its decoding table
STUDY=("Results/14res/all-minilm-l6-v2-tin-seed*" "Results/14res/hnbd-tin-seed*" "Results/14res/ep20-tin-seed*"
       "Results/14res/base-cross_attention-h4-seed*" "Results/14res/ob-cross_attention-h4-seed*"
       "Results/14res/adrop00-cross_attention-h4-seed*" "Results/14res/adrop03-cross_attention-h4-seed*"
       "Results/14res/abl-tin_no_lstm-seed*" "Results/14lap/base-tin-seed*")
python scripts/summarize.py "${STUDY[@]}" --out Results/accuracy.md --plot Results/accuracy.png \
    --title "Accuracy study: configurations over seeds"
python scripts/eval_decoding.py "${STUDY[@]}" "Results/14lap/final-tin-seed*" "Results/14lap/final-cross_attention-h4-seed*" \
    --out Results/decoding.md

python scripts/results_readme.py --core Results/14res/spans-tin-seed42 --seeds "Results/14res/spans-tin-seed*" \
    --tuning "Results/14res/tune-*" --comparison Results/14res/all-minilm-l6-v2-tin-seed42 "Results/14res/cmp-*" \
    --extra "Results/14res/negall-*" "Results/14res/aste-*" Results/14res/sweep3ep-tin-seed42 \
    --sweep "Results/14res/sweep3ep-*" \
    --reports Results/fusions_14res.md Results/datasets.md Results/decoding_final.md Results/final_budget.md \
    Results/final_budget_spans.md Results/fusion_lr.md Results/same_training.md \
    Results/accuracy.md Results/decoding.md

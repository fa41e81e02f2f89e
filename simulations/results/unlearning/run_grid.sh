#!/bin/bash
# Issue 15 robust DiMRA grid: the commands that produced cells/*.json, in the order run.
# Each is resumable (a finished cell is a JSON file under cells/ and is skipped), so
# rerunning this script only computes what is missing. Run from the repository root:
#   bash simulations/results/unlearning/run_grid.sh
set -x
export OMP_NUM_THREADS=1
G="nice -n 10 .venv/bin/python simulations/run_unlearning_grid.py --robust --threads 1"
date; uptime
# 1. main grid: 3 seeds x 3 forget classes x 5 methods, DiMRA on D_r, lr 1e-3 constant
$G --seeds 0 1 2 --classes 0 3 8 --attack-specs retain:1e-3:constant:1000
date; uptime
# 2. attack lr sweep (constant and cosine), seed 0, forget class 0
$G --seeds 0 --classes 0 --methods swap_label erasediff dimum \
   --attack-specs retain:1e-3:cosine:1000 retain:1e-4:constant:1000 \
   retain:1e-4:cosine:1000 retain:1e-5:constant:1000
date; uptime
# 3. a 3,000-step attack at lr 1e-3, seed 0, forget class 0
$G --seeds 0 --classes 0 --methods swap_label salun erasediff dimum \
   --attack-specs retain:1e-3:constant:3000
date; uptime
# 4. stronger attacks: D_r without DiMUM's alternative class, the adaptive untie
#    attacker, last-layers-only, few-shot (5 c_f images) vs the retrain control
$G --seeds 0 --classes 0 --methods swap_label dimum \
   --attack-specs retain_noalt:1e-3:constant:1000 retain_noalt:1e-3:constant:1000:untie \
   retain:1e-3:constant:1000:last2 fewshot5:1e-3:constant:1000
date; uptime
$G --seeds 0 --classes 0 --methods retrain --attack-specs fewshot5:1e-3:constant:1000
date; uptime
# 5. the retrain control under the 3,000-step attack (added after DiMUM's 3,000-step run)
$G --seeds 0 --classes 0 --methods retrain --attack-specs retain:1e-3:constant:3000
date; uptime
# 6. LoRA attacks (peft adapters on every Linear/Conv2d, merged at the end), ranks 4
#    and 16, lr 1e-3 and 3e-3, seed 0, forget class 0
$G --seeds 0 --classes 0 --methods swap_label erasediff dimum \
   --attack-specs retain:1e-3:constant:1000:lora4 retain:1e-3:constant:1000:lora16 \
   retain:3e-3:constant:1000:lora4 retain:3e-3:constant:1000:lora16
date; uptime
# 7. seven more seeds for forget class 0 (10 in all), the main attack (run as two
#    processes side by side, seeds 3-6 and 7-9: cells are independent files)
$G --seeds 3 4 5 6 7 8 9 --classes 0 --attack-specs retain:1e-3:constant:1000
date; uptime
# 8. three more seeds for forget classes 3 and 8 (6 each), the main attack
$G --seeds 3 4 5 --classes 3 --attack-specs retain:1e-3:constant:1000
$G --seeds 3 4 5 --classes 8 --attack-specs retain:1e-3:constant:1000
date; uptime

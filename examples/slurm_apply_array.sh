#!/bin/bash
# Denoise a folder of micrographs as a Slurm job array: each task takes every N-th file
# (--shard auto reads the task and the array's size from Slurm), and a task that is rerun
# after a failure or a time limit does only the files whose outputs are missing
# (--skip-existing; outputs are written atomically, so a killed task leaves no partial file).
#
#   sbatch --array=0-7 examples/slurm_apply_array.sh /data/Micrographs /data/Denoised
#
# INPUT may also be a RELION/cryoSPARC STAR file (run from the project folder); each task then
# writes denoised_micrographs_shardKofN.star, and a last job merges them once all are done:
#
#   jid=$(sbatch --parsable --array=0-7 examples/slurm_apply_array.sh \
#         CtfFind/job003/micrographs_ctf.star Denoise/job010)
#   sbatch --dependency=afterok:$jid --wrap "cryoem-denoise merge-star \
#         Denoise/job010/denoised_micrographs_shard*of8.star \
#         --out Denoise/job010/denoised_micrographs.star"
#
# Exit status per task: 0 all done, 3 some files failed (one line each in the log), 2 none.
#SBATCH --job-name=cryoem-denoise
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --output=cryoem-denoise-%A_%a.log
# On GPU nodes add, for example:  #SBATCH --gres=gpu:1
set -euo pipefail
IN=${1:?usage: sbatch --array=0-N $0 INPUT_FOLDER OUTPUT_FOLDER}
OUT=${2:?usage: sbatch --array=0-N $0 INPUT_FOLDER OUTPUT_FOLDER}
# the environment where cryoem-denoise is installed (edit to match your site)
CRYOEM_DENOISE=${CRYOEM_DENOISE:-cryoem-denoise}
"$CRYOEM_DENOISE" apply "$IN" --out "$OUT" --shard auto --skip-existing -q

#!/usr/bin/env bash
# Mutation testing of the numerical core with mutmut 3 (configuration: setup.cfg [mutmut]).
#
#   scripts/mutation.sh                          # every configured module
#   scripts/mutation.sh 'eoskit.diagnostics.*'   # only mutants whose names match
#
# mutmut copies src/ and tests/ into mutants/ (git-ignored) and keeps its results
# there, so a second run only tests mutants without a result; `rm -rf mutants` starts
# afresh. A run ends with `mutmut results` (the survivors); `mutmut show NAME` prints
# one mutant's diff.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
MUTMUT=${MUTMUT:-$VENV/bin/mutmut}
# Two workers: each mutant forks the test process. One thread each, because torch
# with an OpenMP pool started before fork() can hang in the child.
MAX_CHILDREN=${MAX_CHILDREN:-2}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# mutmut puts mutants/src first on sys.path; a PYTHONPATH pointing at the real src/
# would be removed by mutmut anyway, so drop it to keep the run honest.
unset PYTHONPATH

start=$(date +%s)
"$MUTMUT" run --max-children "$MAX_CHILDREN" "$@"
echo "wall time: $(( $(date +%s) - start )) s"
"$MUTMUT" results

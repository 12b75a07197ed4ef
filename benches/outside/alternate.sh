#!/bin/bash
# Times commands against a reference, outside the project's code: ROUNDS rounds, the
# commands' order rotated every round, one warm-up run each (cache warm), the wall time
# of each process (date +%s%N). Prints each command's median and reference ÷ median.
#
# usage: alternate.sh ROUNDS TREE COMMAND... REFERENCE
#   TREE replaces the word TREE in each command; the last command is the reference.
#   With PREPARE set, it is run (with TREE replaced) before every timed run, untimed:
#   e.g. PREPARE='rm -rf TREE && cp -a /dev/shm/master TREE' for deletes.
# e.g. alternate.sh 7 /work/t 'backstop-sweep --dry-run --age-by mtime TREE' \
#        'find TREE -type f -mmin +1440 -print'
set -eu
rounds=$1 tree=$2
shift 2
cmds=("$@")
n=${#cmds[@]}
prepare() { if [ -n "${PREPARE:-}" ]; then sh -c "${PREPARE//TREE/$tree}"; fi; }
if [ -z "${PREPARE:-}" ]; then
    for c in "${cmds[@]}"; do ${c//TREE/$tree} >/dev/null 2>&1 || true; done
fi
declare -a times
for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < n; k++)); do
        i=$(((k + r) % n))
        prepare
        start=$(date +%s%N)
        ${cmds[$i]//TREE/$tree} >/dev/null 2>&1 || true
        end=$(date +%s%N)
        times[i]="${times[i]:-} $(((end - start) / 1000))"
    done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
ref=$(median "${times[n - 1]}")
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $rounds rounds; tree $tree"
for ((i = 0; i < n; i++)); do
    m=$(median "${times[i]}")
    awk -v c="${cmds[i]}" -v m="$m" -v ref="$ref" -v all="${times[i]}" \
        'BEGIN {printf "%-60s median %.4f s  reference/this %.2fx  (us:%s)\n", substr(c, 1, 60), m / 1e6, ref / m, all}'
done

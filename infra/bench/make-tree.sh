#!/usr/bin/env bash
# A product tree for A/B benchmarks: `shared/` and `functions/` of a git revision, optionally
# with patches applied, extracted into DIR (no worktree, nothing in .git changes).
#   infra/bench/make-tree.sh DIR [REV=HEAD] [PATCH...]
#   .venv/bin/python tests/bench/bench_main.py --product-tree DIR ...
set -euo pipefail
dir=${1:?usage: make-tree.sh DIR [REV] [PATCH...]}
rev=${2:-HEAD}
shift $(( $# >= 2 ? 2 : 1 ))
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
rm -rf "$dir"
mkdir -p "$dir"
git -C "$root" archive "$rev" shared functions | tar -x -C "$dir"
for patch in "$@"; do
  git -C "$dir" apply --directory=. "$(realpath "$patch")" 2>/dev/null \
    || (cd "$dir" && patch -p1 --quiet < "$(realpath "$patch")")
done
echo "$dir: $rev${*:+ + $*}"

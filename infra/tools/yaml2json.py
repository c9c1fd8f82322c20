"""Print the YAML documents of the given files (or stdin) as one JSON list.

Runs in the tools venv (.tools/venv, which has PyYAML), so the tests can read manifests
without adding a YAML parser to the project's own environment. Empty documents are dropped.
"""

import json
import sys

import yaml


def main(paths: list[str]) -> int:
    docs = []
    sources = [open(p, encoding="utf-8") for p in paths] if paths else [sys.stdin]
    for src in sources:
        with src:
            docs.extend(d for d in yaml.safe_load_all(src) if d is not None)
    json.dump(docs, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env bash
echo "terra-lab: bazel coverage is not supported offline; run pytest --cov in a venv instead" >&2
exit 1

#!/usr/bin/env bash
# Debian packages the tests need: audio tools for fixtures, Chromium for the UI tests,
# promtool and amtool for the alert rules and the Alertmanager configuration.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v sox >/dev/null || need+=(sox libsox-fmt-all)
command -v lame >/dev/null || need+=(lame)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v chromium >/dev/null || need+=(chromium)
command -v promtool >/dev/null || need+=(prometheus)  # promtool checks the alert rules
command -v amtool >/dev/null || need+=(prometheus-alertmanager)  # amtool checks its config
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

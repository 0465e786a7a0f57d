#!/usr/bin/env bash
# Makes sure headless Chromium is here for the dashboard's browser test
# (deploy/dashboard/browser_test.go): Debian's chromium, installed when missing (root or sudo).
# Prints the binary's path.
#
#   deploy/dashboard/chromium.sh
set -euo pipefail

for name in chromium chromium-browser; do
  if path=$(command -v "$name"); then
    echo "$path"
    exit 0
  fi
done
echo "chromium not found: installing Debian's package" >&2
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
command -v chromium

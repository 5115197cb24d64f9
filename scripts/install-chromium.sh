#!/usr/bin/env bash
# Installs Chromium for the dashboard's browser tests (tests/dashboard_page.rs) unless it is
# already there. Idempotent: does nothing when `chromium` is found. Debian/Ubuntu only
# (apt-get); elsewhere it says what to do instead.
#
#   NIFTY_CHROMIUM=/path/to/chrome   use that browser instead (nothing is installed)
set -euo pipefail

have() {
  if [ -n "${NIFTY_CHROMIUM:-}" ]; then
    [ -x "$NIFTY_CHROMIUM" ] && { echo "chromium: using NIFTY_CHROMIUM=$NIFTY_CHROMIUM"; return 0; }
    echo "install-chromium: NIFTY_CHROMIUM=$NIFTY_CHROMIUM is not an executable" >&2
    exit 1
  fi
  local found
  for found in /usr/bin/chromium "$(command -v chromium 2>/dev/null || true)" \
               "$(command -v chromium-browser 2>/dev/null || true)"; do
    if [ -n "$found" ] && [ -x "$found" ]; then
      echo "chromium: $found"
      return 0
    fi
  done
  return 1
}

have && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no chromium and no apt-get; install Chromium with your package" \
       "manager, or set NIFTY_CHROMIUM to a Chrome/Chromium binary" \
       "(or NIFTY_SKIP_BROWSER=1 to skip the browser tests)" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-chromium: chromium is missing and installing it needs root; run" \
       "'apt-get install chromium' as root (or set NIFTY_SKIP_BROWSER=1)" >&2
  exit 1
fi

# Another apt run (an unattended upgrade, or an install started earlier) holds the dpkg
# lock; apt-get waits for it itself this long rather than failing at once.
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
install=("${apt[@]}" install -y --no-install-recommends chromium)

echo "install-chromium: installing Debian's chromium package"
if ! "${install[@]}"; then
  # A fresh image often has no package lists yet; fetch them and try once more.
  echo "install-chromium: install failed; running apt-get update and retrying" >&2
  "${apt[@]}" update
  "${install[@]}"
fi

if ! have; then
  echo "install-chromium: chromium installed but not found on PATH or at /usr/bin/chromium" >&2
  exit 1
fi

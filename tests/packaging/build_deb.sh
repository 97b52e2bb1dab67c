#!/bin/bash
# Build the .deb into build/deb/ from a copy of the working tree (tracked and
# new files, not ignored ones), so the build never writes into the repository
# and dpkg-buildpackage's ../ outputs land in build/deb/.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=build/deb
rm -rf "$OUT"
mkdir -p "$OUT/anabranch"
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -xf - -C "$OUT/anabranch"
cd "$OUT/anabranch"
dpkg-buildpackage -us -uc -b "$@"
cd ..
ls -1 "$PWD"/anabranch_*.deb

#!/usr/bin/env bash
# Fetch MathJax 4 and its default font (New Computer Modern) from the npm registry into
# _mathjax/mathjax (git-ignored), so the built book typesets math offline. A few seconds; needs
# npm. Idempotent: an existing copy of the same version is kept.
#
#   _mathjax/mathjax/tex-mml-chtml.js           the component the pages load (mathjax_path)
#   _mathjax/mathjax/{input,output,ui,a11y,sre,adaptors}/   what it loads on demand
#   _mathjax/mathjax/fonts/mathjax-newcm-font/  the font (woff2 + dynamic glyph ranges); the pages'
#                                              MathJax config points loader.paths.fonts here
#                                              (MathJax 4's default is a CDN)
set -euo pipefail
VERSION=4.1.3
cd "$(dirname "$0")/.."
dest=_mathjax/mathjax
if [ -f "$dest/VERSION" ] && [ "$(cat "$dest/VERSION")" = "$VERSION" ]; then touch "$dest/VERSION"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "mathjax@$VERSION" "@mathjax/mathjax-newcm-font@$VERSION" >/dev/null)
rm -rf "$dest"
mkdir -p "$dest/fonts/mathjax-newcm-font"
tar -xzf "$tmp/mathjax-$VERSION.tgz" -C "$dest" --strip-components=1 \
  package/tex-mml-chtml.js package/input package/output package/ui package/a11y package/sre package/adaptors \
  package/LICENSE
tar -xzf "$tmp/mathjax-mathjax-newcm-font-$VERSION.tgz" -C "$dest/fonts/mathjax-newcm-font" --strip-components=1 \
  package/chtml package/chtml.js package/package.json
echo "$VERSION" > "$dest/VERSION"
echo "MathJax $VERSION installed in $dest ($(du -sh "$dest" | cut -f1))"

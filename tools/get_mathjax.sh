#!/usr/bin/env bash
# Fetch MathJax 3 from the npm registry into _mathjax/mathjax (git-ignored), so the built
# book typesets math offline. About 2 s; needs npm. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f _mathjax/mathjax/tex-mml-chtml.js ]; then exit 0; fi
tmp=$(mktemp -d)
(cd "$tmp" && npm pack --silent mathjax@3.2.2 >/dev/null)
mkdir -p _mathjax/mathjax
tar -xzf "$tmp/mathjax-3.2.2.tgz" -C _mathjax/mathjax --strip-components=2 \
  package/es5/tex-mml-chtml.js package/es5/output/chtml/fonts package/es5/input/tex/extensions \
  package/es5/ui package/es5/a11y package/es5/adaptors
rm -rf "$tmp"
echo "MathJax 3.2.2 installed in _mathjax/mathjax"

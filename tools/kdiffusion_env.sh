#!/usr/bin/env bash
# A scratch environment with k-diffusion for tools/compare_kdiffusion.py (never a dependency of the
# book or the package): a venv that sees the project's .venv (its CPU torch) plus k-diffusion and
# its sampling module's imports, installed without dependencies. Prints the interpreter's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
env="${KDIFFUSION_ENV:-/tmp/kdenv}"
if [ ! -x "$env/bin/python" ] || ! "$env/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('k_diffusion') is None)" >/dev/null 2>&1; then
  "$root/.venv/bin/python" -m venv "$env"
  site="$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  "$root/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/zz_project_venv.pth"
  "$env/bin/pip" install -q --no-deps k-diffusion==0.1.1.post1 torchsde==0.2.6 torchdiffeq==0.2.5 trampoline==0.1.2 >&2
fi
echo "$env/bin/python"

"""The README's library example runs as printed (documentation cannot rot)."""

import pathlib
import re


def test_readme_example_runs(capsys):
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Use the library in your own code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = float(capsys.readouterr().out.strip())
    assert 0 <= printed < 0.2  # 20 deterministic DDIM steps with the exact eps: near the exact law

"""The Python examples of README.md's attention section run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run():
    text = README.read_text()
    text = text[text.index("## Attention and Transformer blocks"):text.index("## Benchmark")]
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python examples"
    namespace: dict = {}
    exec(compile("import jax\n" + "\n".join(blocks), str(README), "exec"), namespace)  # noqa: S102
    assert namespace["out"].shape == (2, 1024, 8, 64)
    assert namespace["y1"].shape == (2, 1, 128)

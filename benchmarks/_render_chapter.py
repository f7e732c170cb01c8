"""Execute one chapter and write what a reader would see, as text and PNGs, without the book build.

Not a benchmark (``make bench`` skips files starting with an underscore): a development aid for
reading a chapter's claims against its own output between full builds.

Usage:  .venv/bin/python benchmarks/_render_chapter.py <chapter> [<out-dir>]

Runs ``chapters/<chapter>.md`` top to bottom in a fresh kernel (the book's kernel startup file, in
``chapters/``, as the build does), then writes ``<out-dir>/<chapter>.txt`` (default
``_build/render/``): the markdown with every ``{glue:text}`name:fmt``` replaced by the glued value
formatted as the page would format it, and each code cell's text outputs; every figure the cells
produce is saved as ``<out-dir>/<chapter>-NN.png`` and referenced in the text by that name. A cell
that raises stops the run with its traceback, as in the build.
"""

from __future__ import annotations

import base64
import re
import shutil
import sys
import tempfile
from pathlib import Path

import jupytext
import nbclient

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
GLUE_TEXT = re.compile(r"\{glue:text\}`([^`:]+)(?::([^`]*))?`")
GLUE_ANY = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`")


def glued_values(notebook) -> dict[str, str]:
    """name -> text/plain repr of every value the chapter glued."""
    values = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook", {})
            if "name" in meta:
                data = output.get("data", {})
                values[meta["name"]] = next((v for k, v in data.items() if k.endswith("text/plain")), "")
    return values


def fmt(value: str, spec: str | None) -> str:
    if not spec:
        return value.strip("'\"")
    try:
        return format(float(value), spec)
    except ValueError:
        try:
            return format(int(value), spec)
        except ValueError:
            return value


def main() -> int:
    name = sys.argv[1]
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "_build" / "render"
    out.mkdir(parents=True, exist_ok=True)
    ipython_dir = Path(tempfile.mkdtemp())
    (ipython_dir / "profile_default" / "startup").mkdir(parents=True)
    shutil.copyfile(CHAPTERS / "_ext" / "kernel_startup.py", ipython_dir / "profile_default" / "startup" / "00.py")
    import os

    os.environ["IPYTHONDIR"] = str(ipython_dir)
    notebook = jupytext.read(CHAPTERS / f"{name}.md")
    nbclient.NotebookClient(notebook, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(CHAPTERS)}}).execute()
    values = glued_values(notebook)
    lines, figure = [], 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            text = GLUE_TEXT.sub(lambda m: fmt(values.get(m.group(1), f"<MISSING {m.group(1)}>"), m.group(2)), cell.source)
            text = GLUE_ANY.sub(lambda m: values.get(m.group(1), f"<MISSING {m.group(1)}>"), text)
            lines.append(text)
            continue
        tags = cell.metadata.get("tags", [])
        caption = cell.metadata.get("mystnb", {}).get("figure", {}).get("caption")
        if "remove-cell" not in tags and "remove-input" not in tags:
            lines.append("```python\n" + cell.source + "\n```")
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                figure += 1
                png = out / f"{name}-{figure:02d}.png"
                png.write_bytes(base64.b64decode(data["image/png"]))
                if caption:
                    caption = GLUE_TEXT.sub(lambda m: fmt(values.get(m.group(1), f"<MISSING {m.group(1)}>"), m.group(2)), caption)
                    caption = GLUE_ANY.sub(lambda m: values.get(m.group(1), f"<MISSING {m.group(1)}>"), caption)
                lines.append(f"[figure {png.name}]" + (f" caption: {caption}" if caption else ""))
            elif output.get("output_type") == "stream":
                lines.append("[output] " + output.get("text", ""))
            elif "text/plain" in data and not output.get("metadata", {}).get("scrapbook"):
                lines.append("[output] " + data["text/plain"])
    (out / f"{name}.txt").write_text("\n\n".join(lines))
    print(f"{out / f'{name}.txt'}: {figure} figure(s); {len(values)} glued values")
    return 0


if __name__ == "__main__":
    sys.exit(main())

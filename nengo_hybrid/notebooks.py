"""Execute a notebook and save the executed copy: ``python -m nengo_hybrid.notebooks
NOTEBOOK OUT_DIR``."""

import argparse
from pathlib import Path

from nengo_hybrid.atomic import replacing


def execute(notebook, out_dir, timeout=1800):
    """Run every cell of ``notebook`` (in its own folder) and write the result, with
    its outputs and figures, to ``out_dir`` atomically."""
    import nbclient
    import nbformat

    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
    )
    client.execute()
    target = Path(out_dir) / notebook.name
    with replacing(target, ".ipynb") as tmp:
        nbformat.write(nb, str(tmp))
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    print(f"executing {args.notebook} ...", flush=True)
    print(f"wrote {execute(args.notebook, args.out_dir)}")


if __name__ == "__main__":
    main()

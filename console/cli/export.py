"""`litesrl export`: an encoder or classifier as a torchvision state dict, TorchScript or ONNX (for TensorRT on a Jetson)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="Pretraining checkpoint (exports the backbone) "
                                                    "or classifier checkpoint (the whole classifier).")],
    fmt: Annotated[str, typer.Option("--format", help="torchvision (state dict for torchvision.models.resnetNN), "
                                                      "torchscript, or onnx (opset 17; needs litesrl[export]).")] = "torchscript",
    out: Annotated[Path | None, typer.Option(help="Output file (default: beside the checkpoint, .pth / .pt / .onnx).")] = None,
) -> None:
    """Write CHECKPOINT in a deployable format, with a .json beside it describing input, normalisation and output."""
    from engine.export import SUFFIX, export

    target = out or checkpoint.with_name(f"{checkpoint.stem}-{fmt}{SUFFIX.get(fmt, '')}")
    path = export(checkpoint, fmt, target)
    console.print(f"exported {fmt}: {path}  (metadata: {path.name}.json)")

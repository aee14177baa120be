"""A grid of test digits labelled with the model's predictions, misclassified first."""

from __future__ import annotations

import io

import torch
from PIL import Image, ImageDraw
from torch import nn

from harness.data import MNIST_MEAN, MNIST_STD
from harness.types import IMAGE_SHAPE

CELLS = 32  # digits in the grid
COLUMNS = 8
SCALE = 2  # pixels per MNIST pixel
LABEL_H = 12  # height of the text strip under each digit


@torch.inference_mode()
def prediction_grid(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                    ) -> tuple[Image.Image, str]:
    """(RGB image, caption). Each cell shows 'p<pred> t<true>', red when wrong;
    misclassified digits come first, so the grid shows what the model gets wrong."""
    model.eval()
    predicted = model(x).argmax(1)
    wrong = predicted != y
    order = torch.cat([torch.nonzero(wrong).flatten(), torch.nonzero(~wrong).flatten()])
    order = order[:CELLS].cpu()
    pixels = ((x[order, 0].cpu() * MNIST_STD + MNIST_MEAN).clamp(0, 1) * 255).byte().numpy()
    labels = [(int(predicted[i]), int(y[i]), bool(wrong[i])) for i in order]
    rows = -(-len(order) // COLUMNS)
    _, height, width = IMAGE_SHAPE
    cell_w, cell_h = width * SCALE, height * SCALE + LABEL_H
    canvas = Image.new("RGB", (COLUMNS * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (digit, (pred, true, bad)) in enumerate(zip(pixels, labels, strict=True)):
        left, top = (k % COLUMNS) * cell_w, (k // COLUMNS) * cell_h
        image = Image.fromarray(255 - digit).resize((cell_w, height * SCALE))
        canvas.paste(image.convert("RGB"), (left, top))
        draw.text((left + 2, top + height * SCALE), f"p{pred} t{true}",
                  fill=(200, 0, 0) if bad else (0, 120, 0))
    n_wrong = int(wrong.sum())
    caption = (f"{n_wrong} of {len(y)} example digits misclassified; the grid shows them "
               "first (red: p = predicted, t = true).")
    return canvas, caption


def png(image: Image.Image) -> bytes:
    """Fast PNG: zlib level 1 encodes 4x faster than the default for 15% more bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()

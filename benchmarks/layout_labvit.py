"""Why Grad-CAM finds the object less often than attention rollout on ``lab_vit``: the numbers in NOTES-layout.md.

Pointing game (the map's peak inside the object's box, ``tests.test_lab_vit.peak_in_box``) on the 200 seeded scenes
of NOTES-labvit.md (``make_scenes(200, seed=TEST_SEED + 21)``), target = the scene's label, mean with a 95%
bootstrap interval, paired comparisons with the exact sign test (camlab.stats). Variants, all from one forward and
backward pass per layer (``camlab.methods.forward.capture``, which reads the tokens as the 8x8 grid):

* ``gradcam``: ReLU(sum_k alpha_k A^k), alpha_k = mean over positions of g^k = d y / d A^k (checked equal to
  ``camlab.GradCAM``); ``gradcam+``: only the positive alpha_k; ``|gradcam|``: |sum_k alpha_k A^k| (sign-blind);
* ``grad x act``: ReLU(sum_k g^k_ij A^k_ij) (HiResCAM, per-position weights); ``layercam``: ReLU(sum_k ReLU(g) A);
* ``|g|``: the norm of the gradient at each token, sqrt(sum_k (g^k_ij)^2): how strongly the score reads that token;
* ``cls attention``: the last block's attention from the class token to each patch (mean over heads);
* ``rollout``: attention rollout, the reference.

Run from the repository root: ``python benchmarks/layout_labvit.py`` (about a minute).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import camlab  # noqa: E402
from camlab.hooks import preserved_state, resolve_layer  # noqa: E402
from camlab.lab.scenes import make_scenes, normalise  # noqa: E402
from camlab.lab.train import TEST_SEED  # noqa: E402
from camlab.maps import upsample  # noqa: E402
from camlab.methods.forward import capture  # noqa: E402
from camlab.stats import bootstrap_ci, paired_comparison  # noqa: E402
from tests.test_lab_vit import peak_in_box, rollout_pointing  # noqa: E402

N = 200


def variants(activations: torch.Tensor, gradients: torch.Tensor) -> dict[str, torch.Tensor]:
    alpha = gradients.mean(dim=(2, 3))
    signed = torch.einsum("nk,nkhw->nhw", alpha, activations)
    return {
        "gradcam": signed.clamp_min(0),
        "gradcam+": torch.einsum("nk,nkhw->nhw", alpha.clamp_min(0), activations).clamp_min(0),
        "|gradcam|": signed.abs(),
        "grad x act": (gradients * activations).sum(1).clamp_min(0),
        "layercam": (gradients.clamp_min(0) * activations).sum(1).clamp_min(0),
        "|g|": gradients.pow(2).sum(1).sqrt(),
    }


def last_cls_attention(vit, x: torch.Tensor) -> torch.Tensor:
    """(N, 8, 8) the last block's attention from the class token to the patches, mean over heads: softmax(q k^T *
    scale) recomputed from the q and k that timm passes through ``q_norm`` / ``k_norm`` (as camlab.rollout does)."""
    seen = {}
    attn = vit.blocks[-1].attn
    hooks = [attn.q_norm.register_forward_hook(lambda m, i, o: seen.__setitem__("q", o)),
             attn.k_norm.register_forward_hook(lambda m, i, o: seen.__setitem__("k", o))]
    try:
        with preserved_state(vit), torch.no_grad():
            vit(x)
    finally:
        for hook in hooks:
            hook.remove()
    weights = (seen["q"] @ seen["k"].transpose(-2, -1) * attn.scale).softmax(-1).mean(1)  # (N, L, L)
    return weights[:, 0, 1:].reshape(len(x), 8, 8)


def main() -> None:
    vit = camlab.load_model("lab_vit")
    scenes = make_scenes(N, seed=TEST_SEED + 21)
    x, targets, boxes = normalise(scenes.images), scenes.labels.tolist(), scenes.boxes
    size = tuple(x.shape[-2:])
    hits = {}
    official = camlab.GradCAM(vit, layer="blocks.3.norm1")(x, target=targets)
    hits["camlab.GradCAM blocks.3.norm1"] = peak_in_box(official, boxes)
    for layer in ("blocks.3.norm1", "blocks.2.norm1", "blocks.2", "blocks.1"):
        with preserved_state(vit):
            forward = capture(vit, x, targets, [resolve_layer(vit, layer)], differentiable=True)
        for name, raw in variants(forward.activations, forward.gradients).items():
            hits[f"{name} @ {layer}"] = peak_in_box(upsample(raw, size), boxes)
    hits["cls attention, last block"] = peak_in_box(upsample(last_cls_attention(vit, x), size), boxes)
    hits["rollout (mean)"], chance = rollout_pointing(N)
    assert torch.equal(hits["camlab.GradCAM blocks.3.norm1"], hits["gradcam @ blocks.3.norm1"])
    print(f"pointing game on {N} scenes (a random peak hits {chance:.3f}):")
    for name, values in hits.items():
        print(f"  {name:<32} {bootstrap_ci(values)}")
    print("paired against Grad-CAM @ blocks.3.norm1:")
    for name in ("grad x act @ blocks.3.norm1", "|g| @ blocks.3.norm1", "gradcam @ blocks.2", "rollout (mean)",
                 "cls attention, last block"):
        print(f"  {name:<32} {paired_comparison(hits[name], hits['gradcam @ blocks.3.norm1'])}")


if __name__ == "__main__":
    main()

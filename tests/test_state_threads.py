"""Thread safety: calls on one model from several threads serialise on the model's lock
(:func:`camlab.hooks.model_lock`, held by :func:`camlab.hooks.preserved_state` for the whole call).

On main (e3ff581) there was no lock: a thread entering while another was inside its call saved the model's
*eval* mode as "the mode before", one thread's restore put the model back in train mode while the other was still
computing (BatchNorm then used and changed its batch statistics, dropout drew from the global RNG and the map was
wrong), the model could be left in eval mode, and each thread's hooks saw the other threads' forward passes ("the
target layer ran 2 times in one forward pass"). All three tests here failed there."""
from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

import camlab
from camlab.hooks import model_lock, preserved_state
from tests.snapshots import ModelSnapshot

#: one method of every family: class activation, gradient, perturbation (layer and input), guided, PCA, random
FAMILIES = ["cam", "gradcam", "layercam", "scorecam", "ablationcam", "occlusion", "guided_backprop", "eigencam",
            "random"]


class BatchNormDropoutNet(nn.Module):
    """conv -> BatchNorm -> ReLU -> conv -> BatchNorm -> ReLU -> GAP -> dropout -> FC: in train mode both BatchNorm
    and dropout change what a forward pass computes (and BatchNorm its running statistics)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                      nn.Conv2d(6, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():  # non-trivial running statistics, so that train-mode batch statistics differ
            for bn in (self.features[1], self.features[4]):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))


def _explainer(method, net):
    options = {"progress": False, "batch_size": 4} if method in ("scorecam", "ablationcam") else {}
    if method == "occlusion":
        options = {"patch": 4, "stride": 4, "progress": False}
    return camlab.build(method, net, **options)


def test_threads_on_one_train_mode_model_get_the_single_threaded_maps_and_leave_the_model_as_it_was():
    net = BatchNormDropoutNet().train()
    net.features[1].eval()  # mixed modes must come back exactly
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    explainers = {method: _explainer(method, net) for method in FAMILIES}
    expected = {method: explainer(x, target=[0, 2]) for method, explainer in explainers.items()}
    snapshot = ModelSnapshot.of(net)
    rng = torch.get_rng_state()
    failures: list[str] = []
    start = threading.Barrier(4)

    def work(offset: int) -> None:
        start.wait()
        for iteration in range(6):
            for step in range(len(FAMILIES)):
                method = FAMILIES[(step + offset) % len(FAMILIES)]
                try:
                    heat = explainers[method](x, target=[0, 2])
                except Exception as error:  # noqa: BLE001 (reported below, a thread's exception would be lost)
                    failures.append(f"{method} (thread {offset}, iteration {iteration}) raised {error!r}")
                    continue
                if not torch.allclose(heat, expected[method], atol=1e-5):
                    failures.append(f"{method} (thread {offset}, iteration {iteration}) gave another map")

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    assert not failures, f"maps differed from the single-threaded ones: {failures[:5]}"
    snapshot.assert_unchanged(net)
    assert torch.equal(torch.get_rng_state(), rng), "the global RNG advanced (dropout ran in train mode)"


def _free_in_another_thread(model: nn.Module, timeout: float) -> bool:
    """Whether another thread can take ``model``'s lock within ``timeout`` seconds (it lets go at once)."""
    result = []

    def probe() -> None:
        lock = model_lock(model)
        result.append(lock.acquire(timeout=timeout))
        if result[-1]:
            lock.release()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return result[0]


def test_the_lock_is_per_model_reentrant_and_released_after_an_exception():
    first, second = nn.Linear(2, 2), nn.Linear(2, 2)
    assert model_lock(first) is model_lock(first) and model_lock(first) is not model_lock(second)
    with preserved_state(first), preserved_state(first):  # CAM's classifier search nests inside a call
        assert not _free_in_another_thread(first, 0.05), "another thread entered while this one held the model"
        assert _free_in_another_thread(second, 1.0), "a different model must not wait"
    with pytest.raises(RuntimeError, match="boom"):
        with preserved_state(first):
            raise RuntimeError("boom")
    assert _free_in_another_thread(first, 1.0)


def test_grad_mode_is_per_thread_and_restored_in_each():
    """``torch.set_grad_enabled`` is thread-local: a thread that explains under ``no_grad`` keeps ``no_grad``, and
    another thread's grad mode is not touched by it."""
    net = BatchNormDropoutNet()
    x = torch.randn(1, 3, 8, 8)
    modes = {}

    def explain(name: str, grad: bool) -> None:
        with torch.set_grad_enabled(grad):
            for _ in range(5):
                camlab.GradCAM(net, layer="features.5")(x, target=0)
            modes[name] = torch.is_grad_enabled()

    threads = [threading.Thread(target=explain, args=(f"t{i}", i % 2 == 0)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert modes == {"t0": True, "t1": False, "t2": True, "t3": False}


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
def test_another_threads_plain_forward_passes_neither_disturb_the_map_nor_are_reported_as_a_shared_module(method):
    """A thread that only runs ``model(x)`` (no camlab, so no lock) while camlab explains: camlab's hooks see only
    their own thread's passes, so the map is the single-threaded one (no "ran 2 times ... a shared module") and the
    other thread's outputs are the model's own (never an ablated or captured copy)."""
    torch.manual_seed(0)
    model = BatchNormDropoutNet().eval()
    x, other = torch.rand(2, 3, 16, 16), torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        expected_other = model(other)
    alone = camlab.build(method, model)(x, target=1)
    stop, seen = threading.Event(), []

    def plain_forwards():
        while not stop.is_set():
            with torch.no_grad():
                seen.append(torch.equal(model(other), expected_other))

    worker = threading.Thread(target=plain_forwards)
    worker.start()
    try:
        maps = [camlab.build(method, model)(x, target=1) for _ in range(3)]
    finally:
        stop.set()
        worker.join()
    assert seen and all(seen)
    for result in maps:
        torch.testing.assert_close(result, alone)

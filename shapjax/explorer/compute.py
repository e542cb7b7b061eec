"""Explanations of one image and one class under one setting, cached, computed in the background.

:class:`Explainer` runs every computation on one worker thread (one JAX
program at a time; the web server's threads only wait on futures), caches the
results per ``(image, class, setting)`` in memory and, with ``cache_dir``, on
disk (one ``.npz`` per explanation, named by a hash of the model's weights, the
image's pixels, the class, the setting and the budget, so a restarted server
does not recompute and a changed model or image never reads a stale file), and renders them as PNG
overlays (:func:`overlay_png`: red raises the class score, blue lowers it,
segment outlines in grey).
"""
from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shapjax.explorer.settings import Setting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """One explanation: per-pixel attribution ``pixels [H, W]`` (segment value spread over its pixels)."""

    pixels: np.ndarray
    segments: np.ndarray | None  # [H, W] int, None for pixel methods
    values: np.ndarray | None  # [M] per-segment attribution
    seconds: float
    method: str
    masker: str

    def positive_share(self, mask: np.ndarray) -> float:
        """Share of the positive attribution that lies inside ``mask [H, W]`` bool (0 when none is positive)."""
        pos = np.maximum(self.pixels, 0.0)
        total = float(pos.sum())
        return float(pos[np.asarray(mask, bool)].sum() / total) if total > 0 else 0.0

    def as_dict(self, *, with_maps: bool = True) -> dict:
        out = {"method": self.method, "masker": self.masker, "seconds": round(self.seconds, 3),
               "limit": float(_limit(self.pixels))}
        if with_maps:
            out["pixels"] = np.round(self.pixels, 6).tolist()
            out["segments"] = None if self.segments is None else self.segments.astype(int).tolist()
            out["values"] = None if self.values is None else np.round(self.values, 6).tolist()
        return out


def _limit(pixels: np.ndarray) -> float:
    a = np.abs(pixels)
    lim = float(np.percentile(a, 99.5)) if a.size else 0.0
    return lim if lim > 0 else float(a.max() if a.size else 0.0) or 1.0


def _to_rgb(image: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(image, np.float32), 0, 1)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x[..., :3]


def _upscale(a: np.ndarray, s: int) -> np.ndarray:
    return np.repeat(np.repeat(a, s, axis=0), s, axis=1)


def _scale(shape, target: int = 320) -> int:
    return max(1, int(round(target / max(shape[:2]))))


def image_png(image: np.ndarray, *, target: int = 320) -> bytes:
    """The image itself as a PNG, upscaled (nearest) to about ``target`` pixels."""
    from PIL import Image

    rgb = _upscale(_to_rgb(image), _scale(image.shape, target))
    return _png(Image.fromarray((rgb * 255).round().astype(np.uint8)))


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def overlay_rgb(image: np.ndarray, result: Result, *, target: int = 320) -> np.ndarray:
    """``[h, w, 3]`` uint8: the image in grey, red where the attribution is positive, blue where negative."""
    s = _scale(image.shape, target)
    grey = _to_rgb(image).mean(-1, keepdims=True) * 0.6 + 0.2
    base = np.repeat(grey, 3, -1)
    v = np.clip(result.pixels / _limit(result.pixels), -1, 1)[..., None]
    red, blue = np.array([0.9, 0.05, 0.1], np.float32), np.array([0.05, 0.3, 0.95], np.float32)
    a = np.abs(v) * 0.85
    col = np.where(v > 0, red, blue)
    rgb = _upscale(base * (1 - a) + col * a, s)
    if result.segments is not None:
        seg = _upscale(result.segments, s)
        edge = np.zeros(seg.shape, bool)
        edge[:, 1:] |= seg[:, 1:] != seg[:, :-1]
        edge[1:, :] |= seg[1:, :] != seg[:-1, :]
        rgb[edge] = rgb[edge] * 0.4 + 0.6 * np.array([0.95, 0.95, 0.6], np.float32)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def overlay_png(image: np.ndarray, result: Result, *, target: int = 320) -> bytes:
    from PIL import Image

    return _png(Image.fromarray(overlay_rgb(image, result, target=target)))


class Explainer:
    """Predictions and cached explanations of ``images [N, H, W, C]`` for one classifier.

    Args:
      clf: a :class:`shapjax.models.Classifier` (``features``/``head`` for Grad-CAM).
      images: ``[N, H, W, C]`` float in [0, 1].
      seed: image ``i`` is explained with ``fold_in(key(seed), i)``.
      n_evals: coalitions per explanation (segment methods).
      ig_steps: Integrated-Gradients steps.
      cache_dir: a folder for the on-disk cache (None: memory only).
    """

    def __init__(self, clf, images, *, seed: int = 0, n_evals: int = 512, ig_steps: int = 32, cache_dir=None):
        import jax

        self.clf, self.seed = clf, int(seed)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._fingerprint = None
        self.images = np.asarray(images, np.float32)
        self.n_evals, self.ig_steps = int(n_evals), int(ig_steps)
        self._key = jax.random.key(int(seed))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shapjax-explorer")
        self._lock = threading.Lock()
        self._cache: dict[tuple, Future] = {}
        self._probs = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def probabilities(self) -> np.ndarray:
        """``[N, K]`` softmax probabilities of every image (computed once, in batches)."""
        if self._probs is None:
            import jax

            f = jax.jit(lambda p, x: jax.nn.softmax(self.clf.apply(p, x), axis=-1))
            bs = 64
            parts = [np.asarray(f(self.clf.params, self.images[s:s + bs])) for s in range(0, len(self.images), bs)]
            self._probs = np.concatenate(parts).astype(np.float64)
        return self._probs

    def submit(self, i: int, cls: int, setting: Setting) -> Future:
        """The (cached) future of one explanation; computed on the worker thread."""
        k = (int(i), int(cls), setting.name)
        with self._lock:
            fut = self._cache.get(k)
            if fut is None or (fut.done() and fut.exception() is not None):
                fut = self._pool.submit(self._compute, int(i), int(cls), setting)
                self._cache[k] = fut
            return fut

    def cached(self, i: int, cls: int, setting: Setting) -> Result | None:
        with self._lock:
            fut = self._cache.get((int(i), int(cls), setting.name))
        return fut.result() if fut is not None and fut.done() and fut.exception() is None else None

    def _disk_path(self, i: int, cls: int, setting: Setting) -> Path | None:
        if self.cache_dir is None:
            return None
        if self._fingerprint is None:
            from shapjax.amortized.explainer import fingerprint

            self._fingerprint = fingerprint(self.clf)
        h = hashlib.sha256(f"v1|{self._fingerprint}|{cls}|{setting.name}|{self.n_evals}|{self.ig_steps}|"
                           f"{self.seed}|{i}|{self.images.shape}".encode())
        h.update(np.ascontiguousarray(self.images[i]).tobytes())
        return self.cache_dir / f"{h.hexdigest()[:32]}.npz"

    def _compute(self, i: int, cls: int, setting: Setting) -> Result:
        path = self._disk_path(i, cls, setting)
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    seg = z["segments"] if z["segments"].size else None
                    val = z["values"] if z["values"].size else None
                    return Result(z["pixels"], seg, val, float(z["seconds"]), str(z["method"]), str(z["masker"]))
            except (OSError, ValueError, KeyError) as e:  # a damaged file: recompute it
                log.warning("ignoring the unreadable cache file %s: %s", path, e)
        t0 = time.perf_counter()
        try:
            r = self._explain(i, cls, setting)
        except Exception:
            log.exception("explaining image %d class %d with %s failed", i, cls, setting.name)
            raise
        res = Result(r[0], r[1], r[2], time.perf_counter() - t0, *r[3:])
        if path is not None:
            from shapjax._util.io import atomic_write

            empty = np.zeros((0,), np.float32)
            arrays = dict(pixels=res.pixels, segments=empty if res.segments is None else res.segments,
                          values=empty if res.values is None else res.values, seconds=np.float64(res.seconds),
                          method=np.str_(res.method), masker=np.str_(res.masker))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, lambda f: np.savez(f, **arrays))
            except OSError as e:  # the cache is an optimisation: never fail an explanation on it
                log.warning("could not write the cache file %s: %s", path, e)
        return res

    def _explain(self, i: int, cls: int, setting: Setting):
        import jax
        import jax.numpy as jnp

        from shapjax.baselines import grad_cam, integrated_gradients
        from shapjax.image.explain import explain
        from shapjax.image.maskers import get_masker
        from shapjax.image.segment import get_segmenter

        x = jnp.asarray(self.images[i:i + 1])
        out = np.array([[cls]], np.int32)
        if setting.method == "gradcam":
            feats = jax.tree_util.Partial(self.clf.features, self.clf.params)
            head = jax.tree_util.Partial(self.clf.head, self.clf.params)
            a = grad_cam(feats, head, x, outputs=out[:, 0])
            return np.asarray(a.heatmap()[0], np.float32), None, None, "grad_cam", "none"
        if setting.method == "ig":
            a = integrated_gradients(self.clf, x, outputs=out[:, 0], baseline=0.0, steps=self.ig_steps)
            return np.asarray(a.heatmap()[0], np.float32), None, None, "integrated_gradients", "zero baseline"
        masker = get_masker(setting.masker, images=self.images)
        segmenter = get_segmenter(setting.segments)
        seg, n_seg = segmenter, None
        if segmenter.fixed_n_segments is None:  # superpixels: a few player counts, so a few compiled programs
            seg = np.asarray(segmenter(np.asarray(x)))
            n_seg = -(-(int(seg.max()) + 2) // 16) * 16
        exp = explain(self.clf, x, key=jax.random.fold_in(self._key, i), segments=seg, n_segments=n_seg,
                      masker=masker, method=setting.method, n_evals=self.n_evals, outputs=out, batch_size=256)
        pixels = np.asarray(exp.to_pixels()[0, :, :, 0], np.float32)
        return (pixels, np.asarray(exp.segments[0], np.int32), np.asarray(exp.values[0, :, 0], np.float32),
                exp.method, exp.masker)

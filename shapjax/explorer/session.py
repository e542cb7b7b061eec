"""The explorer without the web: images, a model, a feedback store, a bandit over settings.

:class:`Explorer` is what the HTTP API (:mod:`shapjax.explorer.app`) and the
simulated-user study (``benchmarks/explorer_learning.py``) drive. For the
next image it asks the bandit (:mod:`shapjax.explorer.bandit`) which setting
to show, given every verdict stored for this model and the image's predicted
class; a verdict is stored (committed) and counted at once; marked regions
are scored against every setting in the background (the share of each
setting's positive attribution inside the marks), and those scores count as
fractional verdicts.

Errors the user can cause raise :class:`ApiError` (a ``ValueError`` with an
HTTP status: 400 bad value, 404 unknown image).
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, TimeoutError, wait
from typing import Any, Sequence

import numpy as np

from shapjax.explorer import bandit
from shapjax.explorer.compute import Explainer, Result
from shapjax.explorer.settings import Setting, default_settings, parse_setting
from shapjax.explorer.store import FeedbackStore

log = logging.getLogger(__name__)
TOP_K = 5
MAX_WAIT = 120.0


class ApiError(ValueError):
    """A bad request: ``status`` 400 (bad value) or 404 (unknown image)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _unique_ids(ids, n: int) -> list[str]:
    out, seen = [], {}
    for i, s in enumerate(ids if ids is not None else [f"image-{j}" for j in range(n)]):
        s = str(s)
        k = seen.get(s, 0)
        seen[s] = k + 1
        out.append(s if k == 0 else f"{s}#{k}")
    return out


class Explorer:
    """Show explanations, take 👍/👎, choose the next setting from past feedback.

    Args:
      clf: the :class:`shapjax.models.Classifier`.
      images: ``[N, H, W, C]`` in [0, 1].
      model_name: the name feedback is filed under (one bandit per model).
      store: a :class:`FeedbackStore` or a folder for one.
      ids: one id per image (default ``image-0``...); duplicates get ``#k``.
      labels: ``[N]`` int true labels (-1 unknown) or None.
      settings: the bandit's arms (names or :class:`Setting`; default :func:`default_settings`).
      policy: ``"thompson"`` (learn from feedback) or ``"uniform"`` (random, the baseline).
      seed: explanations use ``fold_in(key(seed), image)``; the bandit's draws ``key(seed + 1)``.
      n_evals: coalitions per segment-method explanation.
      region_weight: how many verdicts one region mark is worth per setting it scores.
      explainer: share an :class:`Explainer` (its cache) between explorers; default: a new one
        caching on disk in ``STORE/cache``.
    """

    def __init__(self, clf, images, *, model_name: str, store, ids: Sequence[str] | None = None, labels=None,
                 settings: Sequence[Any] | None = None, policy: str = "thompson", seed: int = 0,
                 n_evals: int = 512, region_weight: float = 1.0, explainer: Explainer | None = None):
        import jax

        images = np.asarray(images, np.float32)
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(f"images: expected a non-empty [N, H, W, C] array, got shape {images.shape}")
        if policy not in ("thompson", "uniform"):
            raise ValueError(f"policy: expected 'thompson' or 'uniform', got {policy!r}")
        self.clf, self.images, self.model_name, self.policy = clf, images, str(model_name), policy
        self.class_names = list(clf.class_names)
        self.ids = _unique_ids(ids, len(images))
        if len(self.ids) != len(images):
            raise ValueError(f"ids: expected {len(images)} ids, got {len(self.ids)}")
        self.index = {s: i for i, s in enumerate(self.ids)}
        self.labels = None if labels is None else np.asarray(labels, np.int64).reshape(-1)
        arms = settings if settings is not None else default_settings(images.shape[1:])
        self.settings = [s if isinstance(s, Setting) else parse_setting(s) for s in arms]
        if not self.settings or len({s.name for s in self.settings}) != len(self.settings):
            raise ValueError("settings: expected a non-empty list of distinct settings")
        self.by_name = {s.name: s for s in self.settings}
        self.store = store if isinstance(store, FeedbackStore) else FeedbackStore(store)
        self.region_weight = float(region_weight)
        self.explainer = explainer or Explainer(clf, images, seed=seed, n_evals=n_evals,
                                                cache_dir=self.store.path.parent / "cache")
        self._bandit_key = jax.random.key(int(seed) + 1)
        self._lock = threading.Lock()
        self._serial = len(self.store)
        self._cursor = -1
        self._pending: list[Future] = []

    # ------------------------------------------------------------------ lookups (ApiError on bad input)

    def image_index(self, image_id) -> int:
        if image_id is None:
            raise ApiError("image_id: required")
        i = self.index.get(str(image_id))
        if i is None:
            raise ApiError(f"image_id: unknown image {image_id!r} ({len(self.ids)} images, e.g. {self.ids[0]!r})", 404)
        return i

    def class_index(self, value, *, name: str = "class") -> int:
        K = len(self.class_names)
        if isinstance(value, str) and value in self.class_names:
            return self.class_names.index(value)
        if isinstance(value, bool):
            raise ApiError(f"{name}: expected a class index in 0..{K - 1} or a class name, got {value!r}")
        try:
            k = int(value)
        except (TypeError, ValueError):
            raise ApiError(f"{name}: expected a class index in 0..{K - 1} or one of {self.class_names[:10]}, "
                           f"got {value!r}") from None
        if k != value and not isinstance(value, str) or not 0 <= k < K:
            raise ApiError(f"{name}: expected a class index in 0..{K - 1}, got {value!r}")
        return k

    def setting(self, name) -> Setting:
        s = self.by_name.get(name) if isinstance(name, str) else None
        if s is None:
            raise ApiError(f"setting: unknown setting {name!r}; expected one of {list(self.by_name)}")
        return s

    # ------------------------------------------------------------------ what to show

    def predicted(self, i: int) -> int:
        return int(self.explainer.probabilities()[i].argmax())

    def top(self, i: int, k: int = TOP_K) -> list[dict]:
        p = self.explainer.probabilities()[i]
        order = np.argsort(-p, kind="stable")[:k]
        return [{"index": int(c), "name": self.class_names[c], "probability": round(float(p[c]), 6)} for c in order]

    def _next_key(self):
        import jax

        with self._lock:
            self._serial += 1
            return jax.random.fold_in(self._bandit_key, self._serial)

    def posteriors(self, context: int) -> list[bandit.Posterior]:
        counts = self.store.counts(self.model_name, region_weight=self.region_weight)
        return bandit.posteriors(counts, context=context, arms=list(self.by_name))

    def choose(self, i: int) -> bandit.Choice:
        """The setting to show for image ``i``: a Thompson draw for its predicted class (or uniform)."""
        if self.policy == "uniform":
            return bandit.uniform(list(self.by_name), key=self._next_key())
        c = self.predicted(i)
        return bandit.thompson(self.posteriors(c), key=self._next_key(), class_name=self.class_names[c])

    def next(self, image_id=None, *, cls=None, setting=None, wait: float = 0.0, maps: bool = True) -> dict:
        """The next image (or ``image_id``), its top classes and the explanation of the chosen setting.

        Without ``image_id`` the images are shown in order (wrapping around). Without ``setting`` the
        bandit chooses; without ``cls`` the predicted class is explained.
        """
        if image_id is None:
            with self._lock:
                self._cursor = (self._cursor + 1) % len(self.ids)
                i = self._cursor
        else:
            i = self.image_index(image_id)
            with self._lock:
                self._cursor = i
        c = self.predicted(i) if cls is None else self.class_index(cls)
        choice = None
        if setting is None:
            choice = self.choose(i)
            s = self.by_name[choice.arm]
        else:
            s = self.setting(setting)
        view = self.view(i, c, s, wait=wait, maps=maps)
        view["choice"] = choice.as_dict() if choice is not None else {
            "setting": s.name, "policy": "user", "reason": "chosen by the user", "draws": {},
            "posteriors": [p.as_dict() for p in self.posteriors(self.predicted(i))]}
        return view

    def view(self, i: int, c: int, s: Setting, *, wait: float = 0.0, maps: bool = True) -> dict:
        label = None
        if self.labels is not None and 0 <= int(self.labels[i]) < len(self.class_names):
            label = {"index": int(self.labels[i]), "name": self.class_names[int(self.labels[i])]}
        return {"image_id": self.ids[i], "index": i, "n_images": len(self.ids), "model": self.model_name,
                "shape": [int(self.images.shape[1]), int(self.images.shape[2])],
                "image_url": f"/api/image.png?{_q(image_id=self.ids[i])}", "label": label,
                "predicted": self.top(i, 1)[0], "classes": self.top(i),
                "class": {"index": c, "name": self.class_names[c],
                          "probability": round(float(self.explainer.probabilities()[i, c]), 6)},
                "setting": s.describe(), "explanation": self.explanation(i, c, s, wait=wait, maps=maps)}

    def explanation(self, i: int, c: int, s: Setting, *, wait: float = 0.0, maps: bool = True) -> dict:
        """``{"status": "ready"|"pending"|"error", "png_url", ...}``; starts the computation if needed."""
        wait = _check_wait(wait)
        fut = self.explainer.submit(i, c, s)
        url = f"/api/overlay.png?{_q(image_id=self.ids[i], **{'class': c}, setting=s.name)}"
        data_url = f"/api/explanation?{_q(image_id=self.ids[i], **{'class': c}, setting=s.name)}"
        try:
            r = fut.result(timeout=wait) if wait > 0 else (fut.result() if fut.done() else None)
        except TimeoutError:
            r = None
        except Exception as e:  # noqa: BLE001 - reported, not raised: the page shows it
            return {"status": "error", "error": f"{type(e).__name__}: {e}", "png_url": None, "data_url": data_url}
        if r is None:
            return {"status": "pending", "png_url": url, "data_url": data_url}
        return {"status": "ready", "png_url": url, "data_url": data_url, **r.as_dict(with_maps=maps)}

    def result(self, i: int, c: int, s: Setting, *, wait: float = MAX_WAIT) -> Result:
        try:
            return self.explainer.submit(i, c, s).result(timeout=_check_wait(wait))
        except TimeoutError:
            raise ApiError(f"the explanation of {self.ids[i]!r} with {s.name} is not ready yet; retry", 503) from None

    # ------------------------------------------------------------------ feedback

    def feedback(self, payload: Any) -> dict:
        """Store one verdict (committed before this returns) and say what to show next.

        ``payload``: ``{"image_id", "class", "setting", "verdict": "up"|"down", "regions": [...]}``;
        a region is a segment id of the setting's segmentation (an int), a brush stroke
        ``{"x", "y", "r"}`` or a box ``{"box": [x0, y0, x1, y1]}`` (pixels of the model input).
        """
        if not isinstance(payload, dict):
            raise ApiError(f"body: expected a JSON object, got {type(payload).__name__}")
        extra = set(payload) - {"image_id", "class", "setting", "verdict", "regions", "chosen_by"}
        if extra:
            raise ApiError(f"body: unknown field(s) {sorted(extra)}; expected image_id, class, setting, verdict, "
                           "regions")
        for f in ("image_id", "class", "setting", "verdict"):
            if f not in payload:
                raise ApiError(f"{f}: required")
        i = self.image_index(payload["image_id"])
        c = self.class_index(payload["class"])
        s = self.setting(payload["setting"])
        verdict = payload["verdict"]
        if verdict not in ("up", "down"):
            raise ApiError(f"verdict: expected 'up' or 'down', got {verdict!r}")
        regions = payload.get("regions") or []
        chosen_by = payload.get("chosen_by", "")
        if not isinstance(chosen_by, str):
            raise ApiError("chosen_by: expected a string")
        mask = self.region_mask(i, c, s, regions)
        pred = self.predicted(i)
        fid = self.store.add(model=self.model_name, image_id=self.ids[i], cls=c, class_name=self.class_names[c],
                             predicted=pred, setting=s.name, verdict=verdict, regions=regions, chosen_by=chosen_by)
        if mask is not None:
            self._score_regions(fid, i, c, mask)
        out = {"id": fid, "stored": True, "n_feedback": len(self.store),
               "marked_pixels": 0 if mask is None else int(mask.sum())}
        if verdict == "down":
            order = [d["index"] for d in self.top(i, len(self.class_names))]
            nxt = order[(order.index(c) + 1) % len(order)]
            alt = bandit.best_alternative(self.posteriors(pred), exclude=s.name)
            out["next"] = {"class": nxt, "class_name": self.class_names[nxt], "setting": s.name}
            out["alternative"] = {"class": c, "class_name": self.class_names[c], "setting": alt,
                                  "why": "the setting with the best posterior mean for this class after this 👎"}
        return out

    def region_mask(self, i: int, c: int, s: Setting, regions) -> np.ndarray | None:
        """``[H, W]`` bool of the marked pixels, or None when nothing is marked."""
        if not isinstance(regions, list):
            raise ApiError(f"regions: expected a list, got {type(regions).__name__}")
        if not regions:
            return None
        if len(regions) > 10000:
            raise ApiError(f"regions: at most 10000 items, got {len(regions)}")
        H, W = self.images.shape[1:3]
        mask = np.zeros((H, W), bool)
        yy, xx = np.mgrid[0:H, 0:W]
        seg = None
        for j, r in enumerate(regions):
            if isinstance(r, int) and not isinstance(r, bool):
                if seg is None:
                    if s.pixel:
                        raise ApiError(f"regions[{j}]: segment ids need a segment setting; {s.name} has none "
                                       "(mark with brush strokes {\"x\", \"y\", \"r\"} instead)")
                    seg = self.result(i, c, s).segments
                if not 0 <= r <= int(seg.max()):
                    raise ApiError(f"regions[{j}]: segment id {r} outside 0..{int(seg.max())}")
                mask |= seg == r
            elif isinstance(r, dict) and set(r) <= {"x", "y", "r"} and {"x", "y"} <= set(r):
                x, y = _num(r, "x", j), _num(r, "y", j)
                rad = _num(r, "r", j) if "r" in r else 1.0
                if not (0 <= x < W and 0 <= y < H and 0 < rad <= max(H, W)):
                    raise ApiError(f"regions[{j}]: brush {r} outside the {W}x{H} image or radius not in (0, {max(H, W)}]")
                mask |= (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= rad ** 2
            elif isinstance(r, dict) and set(r) == {"box"} and isinstance(r["box"], list) and len(r["box"]) == 4:
                x0, y0, x1, y1 = (_num({"box": v}, "box", j) for v in r["box"])
                if not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H):
                    raise ApiError(f"regions[{j}]: box {r['box']} is not [x0, y0, x1, y1] inside the {W}x{H} image")
                mask[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = True
            else:
                raise ApiError(f"regions[{j}]: expected a segment id, {{\"x\", \"y\", \"r\"}} or {{\"box\": [x0, y0, "
                               f"x1, y1]}}, got {r!r}")
        return mask if mask.any() else None

    def _score_regions(self, fid: int, i: int, c: int, mask: np.ndarray) -> None:
        """Score every setting by its share of positive attribution in the marks, in the background."""
        for s in self.settings:
            written: Future = Future()  # done once the score is in the store (not merely computed)

            def done(f, s=s, written=written):
                try:
                    if f.exception() is None:
                        self.store.add_region_scores(fid, {s.name: f.result().positive_share(mask)})
                except Exception:  # noqa: BLE001 - a background write: logged, never raised into the server
                    log.exception("storing the region score of %s for feedback %d failed", s.name, fid)
                finally:
                    written.set_result(None)

            with self._lock:
                self._pending = [p for p in self._pending if not p.done()] + [written]
            self.explainer.submit(i, c, s).add_done_callback(done)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until the background region scoring is done (tests, the study)."""
        with self._lock:
            pending = list(self._pending)
        wait(pending, timeout=timeout)

    def health(self) -> dict:
        return {"status": "ok", "model": self.model_name, "n_images": len(self.ids), "n_classes": len(self.class_names),
                "n_feedback": len(self.store), "store": str(self.store.path), "policy": self.policy,
                "settings": [s.describe() for s in self.settings]}

    def close(self) -> None:
        self.explainer.close()
        self.store.close()


def _num(d: dict, k: str, j: int) -> float:
    v = d[k]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise ApiError(f"regions[{j}].{k}: expected a number, got {v!r}")
    return float(v)


def _check_wait(wait) -> float:
    try:
        w = float(wait)
    except (TypeError, ValueError):
        raise ApiError(f"wait: expected seconds in [0, {MAX_WAIT:g}], got {wait!r}") from None
    if not 0 <= w <= MAX_WAIT:
        raise ApiError(f"wait: expected seconds in [0, {MAX_WAIT:g}], got {wait!r}")
    return w


def _q(**params) -> str:
    from urllib.parse import urlencode

    return urlencode(params)

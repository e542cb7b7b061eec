"""The explorer: a local web page to look at explanations, give 👍/👎, and have later explanations learn from it.

``shapjax explore SOURCE... --model M --store DIR`` serves a page on
127.0.0.1 (:mod:`shapjax.explorer.app`, Starlette + uvicorn: ``pip install
'shapjax[explore]'``) over an :class:`Explorer` (:mod:`shapjax.explorer.session`):
for each image the top-5 classes, an explanation overlay and 👍/👎. Verdicts go
to SQLite in ``DIR`` (:class:`FeedbackStore`), and a Thompson-sampling bandit
over explanation settings (:mod:`shapjax.explorer.bandit`) chooses the setting
of the next image from them, per model and predicted class. :mod:`shapjax.explorer.rrr` fine-tunes
the model so its input gradients stay inside the marked regions (Ross et al. 2017).
"""
from shapjax.explorer import bandit
from shapjax.explorer.session import ApiError, Explorer
from shapjax.explorer.settings import Setting, default_settings, parse_setting
from shapjax.explorer.store import FeedbackStore

__all__ = ["Explorer", "ApiError", "FeedbackStore", "Setting", "default_settings", "parse_setting", "bandit",
           "create_app", "serve"]


def __getattr__(name):  # the web layer needs the optional starlette/uvicorn: imported on first use
    if name in ("create_app", "serve"):
        from shapjax.explorer import app

        return getattr(app, name)
    raise AttributeError(f"module 'shapjax.explorer' has no attribute {name!r}")

"""Gradients through ``explain`` against differentiating the same forward passes directly.

For a model ``f`` with weights ``p`` and one image, ``explain`` evaluates ``f`` on N composed
images; a training step that penalises the explanation differentiates all of them. This
benchmark times ``jax.grad`` of a loss of ``explain(...).values`` against ``jax.grad`` of a loss
of ``f(p, X)`` on the same N composed images ``X`` (the floor: the same forward and backward
work without the engine), side by side in one process, steady state (compilation excluded).
It also times the rolled chunk loop (``lax.map``) that ``explain`` used before it unrolled its
chunks under autodiff, so the table shows what the unrolling buys on this backend.

Goal (issue 11): explain's gradient within 1.5x of the direct one.

    python -m benchmarks.grad_through_explain [--quick]
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks.common import backend, machine_line, main_quick, steady_seconds


def run(quick: bool = False) -> dict:
    import importlib

    import shapjax
    from shapjax import maskers, segment

    explain_mod = importlib.import_module("shapjax.image.explain")  # the module (shapjax.image.explain is also the function)
    from shapjax.kernels.masking import compose_rows

    clf = shapjax.models.pretrained("mnist-cnn")
    x = jnp.asarray(shapjax.data.samples("mnist").images[:1])
    seg = segment.grid(4, 4)(x)
    rows = []
    for n_evals in ([512] if quick else [512, 2048]):
        kw = dict(key=jax.random.key(0), segments=seg, masker=maskers.constant(0.0), method="kernel",
                  n_evals=n_evals, outputs=[0], n_segments=16)

        def loss_explain(params):
            e = shapjax.explain(clf.replace(params=params), x, **kw)
            return jnp.sum(e.values ** 2)

        Z = jax.random.bernoulli(jax.random.key(1), 0.5, (n_evals, 16))
        X = compose_rows(jnp.repeat(x, n_evals, 0), jnp.zeros_like(x), jnp.repeat(seg, n_evals, 0), Z)[:, 0]

        def loss_direct(params):
            return jnp.sum(clf.apply(params, X)[:, 0] ** 2)

        direct = steady_seconds(jax.jit(jax.grad(loss_direct)), clf.params)
        through = steady_seconds(jax.jit(jax.grad(loss_explain)), clf.params)
        forward = steady_seconds(jax.jit(loss_explain), clf.params)
        # the rolled loop explain used before: force it by hiding the autodiff from the chunk policy
        rolled = float("nan")
        if n_evals == 512:  # minutes per call at larger budgets: measured once, at the smallest
            orig = explain_mod.under_autodiff
            explain_mod.under_autodiff = lambda *a: False
            try:
                rolled = steady_seconds(jax.jit(jax.grad(loss_explain)), clf.params, repeats=1)
            finally:
                explain_mod.under_autodiff = orig
        rows.append({"model": "mnist-cnn", "n_evals": n_evals, "segments": "grid 4x4", "direct_grad_s": direct,
                     "explain_grad_s": through, "explain_forward_s": forward, "rolled_loop_grad_s": rolled,
                     "ratio": through / direct, "rolled_ratio": rolled / direct})
        print(rows[-1], flush=True)
    return {"rows": rows, "goal_ratio": 1.5}


def table(result: dict) -> str:
    lines = ["| model | evals | direct grad s | grad through explain s | ratio (goal <= 1.5) | rolled loop s | rolled ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['n_evals']} | {r['direct_grad_s']:.3g} | {r['explain_grad_s']:.3g} | "
                     f"{r['ratio']:.2f} | {r['rolled_loop_grad_s']:.3g} | {r['rolled_ratio']:.1f} |".replace("nan", "-"))
    return "\n".join(lines)


def markdown(m: dict, result: dict) -> str:
    return (f"# Gradients through explain ({machine_line(m)})\n\n`jax.grad` of a loss of `explain(...).values` against "
            "`jax.grad` of the same loss structure on the same composed images evaluated directly; steady state, best "
            "of 3, one process. 'rolled loop' is the chunk loop explain used before it unrolled under autodiff.\n\n"
            + table(result) + "\n")


def main(argv=None) -> None:
    main_quick(__doc__, f"grad_through_explain_{backend()}", run, markdown, argv)


if __name__ == "__main__":
    main()

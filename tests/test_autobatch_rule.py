"""The chunk-size probe's rule (shapjax._util.autobatch.search) on scripted timings: no model, no compile."""
from __future__ import annotations

import pytest

from shapjax._util import autobatch


class FakeDevice:
    """A clock that advances only when the fake programs compile or run."""

    def __init__(self, per_row, compile_s=1.0, temp_per_row=0, spikes=()):
        self.now, self.per_row, self.compile_s, self.temp_per_row = 0.0, per_row, compile_s, temp_per_row
        self.compiled, self.calls, self.spikes = [], {}, list(spikes)

    def clock(self):
        return self.now

    def compile_at(self, b):
        self.compiled.append(b)
        self.now += self.compile_s

        def call():
            self.calls[b] = self.calls.get(b, 0) + 1
            self.now += b * self.per_row[b] * (self.spikes.pop(0) if self.spikes else 1.0)

        return call, b * self.temp_per_row

    def search(self, max_rows=1 << 20, free=None):
        return autobatch.search(self.compile_at, max_rows=max_rows, free=free, clock=self.clock)


# ResNet-18 at 32x32 on 2 cores (benchmarks/results/chunk_size_cpu.json): seconds per image by batch.
RESNET18 = {16: 0.0163, 32: 0.0154, 64: 0.0147, 128: 0.0127, 256: 0.0111, 512: 0.0110, 1024: 0.0109, 2048: 0.011}


def test_a_slow_model_reaches_the_large_batches_it_runs_best_at():
    dev = FakeDevice(RESNET18, compile_s=2.0)
    chosen, rates = dev.search()
    assert chosen == 256  # the old rule stopped after the first call over 0.5 s: 32, and chose 16
    assert dev.compiled == [16, 32, 64, 128, 256]  # 512 would take 5.6 s a call: over MAX_CALL_SECONDS
    assert all(dev.calls[b] == 2 for b in (32, 64, 128, 256))  # slow calls: two each, not 3+
    assert dev.now <= autobatch.PROBE_SECONDS


def test_the_probe_time_budget_holds_when_compiles_are_slow():
    dev = FakeDevice(RESNET18, compile_s=13.0)
    chosen, rates = dev.search()
    assert dev.now <= autobatch.PROBE_SECONDS
    assert dev.compiled == [16, 32, 64]  # a fourth compile plus its calls would pass the budget
    assert chosen == 64 and set(rates) == {16, 32, 64}


def test_a_small_model_tries_every_candidate_cheaply_and_does_not_stop_at_a_dip():
    per_row = {16: 2e-5, 32: 4e-5, 64: 4e-5, 128: 1.2e-5, 256: 1.19e-5, 512: 4e-5, 1024: 4e-5, 2048: 4e-5}
    dev = FakeDevice(per_row, compile_s=0.2)
    chosen, rates = dev.search()
    assert dev.compiled == list(autobatch.CANDIDATES)
    assert chosen == 128  # 256 is within 3 % of it: the smaller wins
    assert dev.now < 5.0
    assert all(n >= 3 for n in dev.calls.values())


def test_the_job_size_and_the_memory_bound_the_candidates():
    dev = FakeDevice({b: 1e-5 / b for b in autobatch.CANDIDATES}, compile_s=0.1)  # bigger is always faster
    assert dev.search(max_rows=300)[0] == 256 and dev.compiled == [16, 32, 64, 128, 256]
    dev = FakeDevice({b: 1e-5 / b for b in autobatch.CANDIDATES}, compile_s=0.1, temp_per_row=1 << 20)
    chosen, rates = dev.search(free=(1 << 20) * 256 * 4)  # 256 rows of temporaries fit in a quarter
    assert chosen == 256 and max(rates) == 256 and dev.compiled[-1] == 512  # 512 compiled, refused, not run
    assert 512 not in dev.calls


def test_the_fastest_call_counts_so_a_load_spike_does_not_lose_the_best_batch():
    per_row = {b: 0.02 for b in autobatch.CANDIDATES} | {32: 0.01}  # 0.32 s calls at 16 and 32
    dev = FakeDevice(per_row, compile_s=0.0, spikes=[1, 1, 5.0])  # 32's first call is 5x slower
    chosen, rates = dev.search()
    assert dev.calls[16] == 2 and dev.calls[32] == 2
    assert chosen == 32 and rates[32] == pytest.approx(100)


@pytest.mark.parametrize("max_rows", [1, 16])
def test_tiny_jobs_still_get_one_candidate(max_rows):
    dev = FakeDevice(RESNET18)
    assert dev.search(max_rows=max_rows)[0] == 16 and dev.compiled == [16]


def test_a_program_of_two_chunks_counts_both_and_limits_each_model_call():
    dev = FakeDevice({b: r * 2 for b, r in RESNET18.items()}, compile_s=1.0)  # each run = 2 model calls
    chosen, rates = autobatch.search(dev.compile_at, max_rows=1 << 20, clock=dev.clock, chunks=2)
    assert rates[16] == pytest.approx(1 / RESNET18[16])  # images per second of the model, not of the program
    assert dev.compiled[-1] * RESNET18[dev.compiled[-1]] <= autobatch.MAX_CALL_SECONDS
    assert dev.now <= autobatch.PROBE_SECONDS and chosen == max(rates)

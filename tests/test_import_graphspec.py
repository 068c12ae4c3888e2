"""Graph specs (golden.qat.graphspec): an imported network's graph in its checkpoint, checked on reading."""

from __future__ import annotations

import copy

import pytest

from asqhw.core.errors import UserError
from asqhw.golden.qat.digits_cnn import digits_cnn
from asqhw.golden.qat.graphspec import build_from_spec, spec_of
from asqhw.golden.qat.scheme import Scheme

SCHEME = Scheme("asq+post", 4)


@pytest.fixture(scope="module")
def spec():
    return spec_of(digits_cnn(SCHEME))


def test_a_spec_rebuilds_the_network_it_was_taken_from(spec):
    net = digits_cnn(SCHEME)
    again = build_from_spec(spec, SCHEME)
    assert [(n.name, n.op, n.inputs, n.attrs) for n in again.nodes] == [(n.name, n.op, n.inputs, n.attrs) for n in net.nodes]
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert spec["nodes"][-2]["unit"] == {"bits": 8, "channels": 32}


def _set(path, value):
    def mutate(s):
        node = s["nodes"][path[0]] if isinstance(path[0], int) else s
        for key in path[1:-1] if isinstance(path[0], int) else path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


@pytest.mark.parametrize("mutate, fragment", [
    (_set([1, "name"], "Conv1"), "bad or repeated node name"),
    (_set([1, "name"], "input_q"), "bad or repeated node name"),
    (_set([1, "op"], "softmax"), "unknown op"),
    (_set([1, "inputs"], ["later"]), "among the earlier nodes"),
    (_set([1, "unit", "cout"], -3), "conv1.cout must be an integer"),
    (_set([1, "unit", "cout"], True), "conv1.cout must be an integer"),
    (_set([1, "unit"], {"cin": 1 << 16, "cout": 1 << 16, "kernel": 3, "stride": 1, "padding": 1}), "weights, more than"),
    (_set([1, "attrs", "relu"], "yes"), "relu and edge must be true or false"),
    (_set([2, "unit", "bits"], 9), "q1.bits must be an integer in 2..8"),
    (_set([4, "attrs", "padding"], 2), "pool.padding must be an integer in 0..1"),
    (_set(["input_shape"], [1, 8]), "input_shape must be [C, H, W]"),
    (_set(["input_shape"], [3, 1 << 16, 1 << 16]), "more than 16777216 values"),
    (_set(["name"], "My Net"), "bad network name"),
    (_set(["nodes"], []), "1..4096 nodes"),
    (lambda s: s["nodes"].pop(), "the last a linear layer"),
])
def test_a_malformed_spec_is_one_user_error(spec, mutate, fragment):
    bad = copy.deepcopy(spec)
    mutate(bad)
    with pytest.raises(UserError) as e:
        build_from_spec(bad, SCHEME)
    assert fragment in str(e.value)

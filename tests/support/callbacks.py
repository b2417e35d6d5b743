"""Writing small child process graphs (callbacks) in tests: references, nodes, W2's cloud
mask."""

from __future__ import annotations


def p(name: str) -> dict:
    """A reference to a parameter."""
    return {"from_parameter": name}


def n(node: str) -> dict:
    """A reference to a node's result."""
    return {"from_node": node}


def band(label: str) -> dict:
    """array_element of the callback's `data` by label."""
    return {"process_id": "array_element", "arguments": {"data": p("data"), "label": label}}


def node(pid: str, **arguments) -> dict:
    return {"process_id": pid, "arguments": arguments}


def graph(result: str, **nodes: dict) -> dict:
    """A process graph of the nodes, `result` its result node."""
    nodes[result] = {**nodes[result], "result": True}
    return {"process_graph": nodes}


# W2's cloud mask: SCL in {3, 8, 9, 10} as four eq and three or
CLOUD = graph("o3", scl=band("SCL"),
              e3=node("eq", x=n("scl"), y=3), e8=node("eq", x=n("scl"), y=8),
              e9=node("eq", x=n("scl"), y=9), e10=node("eq", x=n("scl"), y=10),
              o1=node("or", x=n("e3"), y=n("e8")), o2=node("or", x=n("e9"), y=n("e10")),
              o3=node("or", x=n("o1"), y=n("o2")))

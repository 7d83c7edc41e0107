"""Names of the step graph's inputs and outputs, shared by the exporter and the graph backends.

Inputs: activity (1, N), behavior (1, 4), state{i} (1, span_i, D). Outputs: frame (1, H, W),
next_state{i}, which the caller feeds back as state{i} on the next tick.
"""

ACTIVITY = "activity"
BEHAVIOR = "behavior"
FRAME = "frame"


def state_names(n_blocks: int) -> list[str]:
    return [f"state{i}" for i in range(n_blocks)]


def next_state_names(n_blocks: int) -> list[str]:
    return [f"next_state{i}" for i in range(n_blocks)]

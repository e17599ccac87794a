"""Mixed precision: the Keras dtype policy networks are built under (imports keras only).

``--mixed_precision=bfloat16`` builds every network under Keras's
``mixed_bfloat16`` policy (float32 variables, bfloat16 compute), ``float16``
under ``mixed_float16`` (the train step scales the losses: see
``training/build.py``). The networks keep the numerically delicate parts in
float32 themselves: the image heads' activations, the discriminators'
logits, the spectral-norm power iteration, and every loss.
"""

import contextlib

import keras

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def policy_name(precision):
    try:
        return POLICIES[precision]
    except KeyError:
        raise ValueError(f"mixed_precision {precision!r}: expected one of "
                         f"{', '.join(POLICIES)}") from None


@contextlib.contextmanager
def policy_scope(precision):
    """Layers created inside use the policy of ``precision``; the previous
    global policy is restored on exit (a policy is fixed when a layer is made)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy_name(precision))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)

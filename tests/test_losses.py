import numpy as np
import pytest
import tensorflow as tf

from mlc_keras.training import losses


def logits(values, shape=(2, 4, 4, 1)):
    return tf.fill(shape, float(values)) if np.isscalar(values) else tf.constant(values, tf.float32)


def test_nonsaturating_matches_log_form():
    # L_D = -[log D(x_t) + log(1 - D(G))] with D = sigmoid(logit)
    r, f = 0.7, -0.3
    total, real, fake = losses.discriminator_loss(logits(r), logits(f))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    assert total.shape == (2,)
    np.testing.assert_allclose(real, -np.log(sig(r)), rtol=1e-6)
    np.testing.assert_allclose(fake, -np.log(1 - sig(f)), rtol=1e-6)
    np.testing.assert_allclose(total, real + fake, rtol=1e-6)
    g = losses.generator_adversarial_loss(logits(f))
    np.testing.assert_allclose(g, -np.log(sig(f)), rtol=1e-6)


def test_per_example_means_over_patches():
    x = np.zeros((2, 2, 2, 1), np.float32)
    x[1] = 3.0  # second example confidently "real"
    _, real, _ = losses.discriminator_loss(x, x)
    assert real[1] < real[0]
    assert real.shape == (2,)


@pytest.mark.parametrize("kind,r,f,expect_d,expect_g", [
    ("hinge", 0.5, -0.5, 0.5 + 0.5, 0.5),
    ("lsgan", 1.0, 0.0, 0.0, 0.5),
    ("wgan", 2.0, 1.0, -2.0 + 1.0, -1.0),
])
def test_alternative_losses(kind, r, f, expect_d, expect_g):
    total, _, _ = losses.discriminator_loss(logits(r), logits(f), kind)
    np.testing.assert_allclose(total, [expect_d] * 2, atol=1e-6)
    np.testing.assert_allclose(losses.generator_adversarial_loss(logits(f), kind), [expect_g] * 2,
                               atol=1e-6)


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="gan loss kind"):
        losses.discriminator_loss(logits(0), logits(0), "bce")


def test_l1_per_example():
    a = tf.zeros((2, 4, 4, 3))
    b = tf.concat([tf.zeros((1, 4, 4, 3)), tf.ones((1, 4, 4, 3)) * 0.5], 0)
    np.testing.assert_allclose(losses.l1_loss(a, b), [0.0, 0.5])


def test_gradient_penalty_of_linear_critic():
    # critic(x) = sum(w * x): gradient norm is ||w|| everywhere.
    w = tf.constant(np.full((2, 2, 1), 0.25, np.float32))  # ||w|| = 0.5
    critic = lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])  # noqa: E731
    real = tf.ones((3, 2, 2, 1))
    fake = tf.zeros((3, 2, 2, 1))
    gp = losses.gradient_penalty(critic, real, fake, tf.constant([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(gp, [(0.5 - 1.0) ** 2] * 3, rtol=1e-4)


def test_mask_indecision_is_one_at_half_and_zero_at_a_hard_choice():
    half = tf.fill([1, 4, 4, 1], 0.5)
    hard = tf.reshape(tf.constant([0.0, 1.0] * 8), [1, 4, 4, 1])
    mixed = tf.concat([half, hard], 0)
    np.testing.assert_allclose(losses.mask_indecision(mixed).numpy(), [1.0, 0.0], atol=1e-6)
    assert 0 < float(losses.mask_indecision(tf.fill([1, 2, 2, 1], 0.9))[0]) < 0.5

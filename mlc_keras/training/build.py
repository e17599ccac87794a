"""Config -> networks, the GAN train-step model and optimizers (the only place that reads model
fields of the config; the networks themselves know nothing of flags)."""

import keras

from mlc_keras.config import mouth_box_fractions
from mlc_keras.training.gan import LevelCritic, LossWeights, MLCGAN, PairedGAN, StarGAN
from mlc_keras.models import FeatureEncoder, Generator, PatchDiscriminator, StarDiscriminator
from mlc_keras.models.generator import decoder_levels
from mlc_keras.models.layers import downsample_images, remat_scope
from mlc_keras.models.precision import policy_scope


class CopyGenerator(keras.Model):
    """The copy-the-source baseline: every decoder level is the input image
    (area-downsampled like the training targets), whatever the expression.
    No weights; it has the generator interface the evaluation, the sample
    grid and the loaders use (``levels``, ``num_classes``, ``resolution``,
    ``build_for_inputs``)."""

    def __init__(self, resolution, num_classes, downsamples, expressions=(), **kwargs):
        super().__init__(**kwargs)
        self.resolution = int(resolution)
        self.num_classes = int(num_classes)
        self.levels = decoder_levels(self.resolution, int(downsamples))
        self.expressions = tuple(expressions)

    def call(self, inputs, training=False):
        images = keras.ops.cast(inputs[0], "float32")
        return [downsample_images(images, level) for level in self.levels]

    def build_for_inputs(self, batch_size=1):
        r = self.resolution
        self((keras.ops.zeros((batch_size, r, r, 3)), keras.ops.zeros((batch_size, self.num_classes))))
        return self


def build_generator(config):
    if config.model == "copy":
        return CopyGenerator(config.resolution, len(config.expressions), config.g_downsamples,
                             config.expressions, name="generator")
    return Generator(
        resolution=config.resolution, num_classes=len(config.expressions),
        base_channels=config.g_channels, downsamples=config.g_downsamples,
        res_blocks=config.g_res_blocks, norm=config.g_norm, skips=config.g_skips,
        conditioning=config.g_conditioning, output=config.g_output,
        expressions=config.expressions, warp=config.g_warp, max_flow=config.max_flow,
        shading=config.g_shading, flow_snap=config.g_flow_snap,
        motion_box=mouth_box_fractions(config.motion_box, "motion_box") if config.motion_box else None,
        name="generator")


def build_critics(config):
    """One LevelCritic per --critic_levels entry, with f per --feature_encoder, and
    the mouth's box critic with --mouth_critic_weight."""
    shared = None
    if config.variation_critic and config.feature_encoder == "shared":
        shared = FeatureEncoder(config.feature_channels, config.spectral_norm, name="f_shared")
    critics = []
    for level in config.critic_levels:
        photo = encoder = variation = None
        if config.photo_critic:
            photo = PatchDiscriminator(
                level, config.d_channels, config.critic_downsamples, config.d_condition,
                config.spectral_norm, name=f"photo_{level}")
        if config.variation_critic:
            encoder = shared or FeatureEncoder(config.feature_channels, config.spectral_norm,
                                               name=f"f_{level}")
            if config.feature_encoder == "frozen":
                encoder.trainable = False
            # The variation critic sees feature differences (+ the expression code).
            condition = "expression" if config.d_condition in ("expression", "both") else "none"
            variation = PatchDiscriminator(
                level // 4, config.d_channels, max(1, config.critic_downsamples - 1), condition,
                config.spectral_norm, name=f"variation_{level}")
        critics.append(LevelCritic(level, photo, encoder, variation))
    if config.mouth_critic_weight:
        box = mouth_box_fractions(config.mouth_box)
        side = int(round((box[2] - box[0]) * config.resolution))
        photo = PatchDiscriminator(side, config.d_channels, config.critic_downsamples,
                                   config.d_condition, config.spectral_norm, name="photo_mouth")
        critics.append(LevelCritic(side, photo, box=box))
    return critics


def _schedule(lr, config, updates_per_step=1):
    """The learning rate of an optimizer that makes ``updates_per_step``
    updates per G step (D and the critics: --n_critic): constant for the first
    ``lr_decay_start`` of training, then linear to 0 at the last step, in that
    optimizer's own iteration count (Keras evaluates a schedule at it)."""
    start = int(config.lr_decay_start * config.train_steps)
    if start >= config.train_steps:
        return lr
    return LinearDecay(lr, start * updates_per_step, config.train_steps * updates_per_step)


@keras.saving.register_keras_serializable(package="mlc_keras")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant until ``decay_start``, then linear to 0 at ``total_steps``."""

    def __init__(self, initial, decay_start, total_steps):
        self.initial = float(initial)
        self.decay_start = int(decay_start)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        span = float(max(self.total_steps - self.decay_start, 1))
        frac = keras.ops.clip((step - self.decay_start) / span, 0.0, 1.0)
        return self.initial * (1.0 - frac)

    def get_config(self):
        return {"initial": self.initial, "decay_start": self.decay_start,
                "total_steps": self.total_steps}


def build_optimizer(config, lr, name, updates_per_step=1):
    schedule = _schedule(lr, config, updates_per_step)
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, name=name)
    else:
        optimizer = keras.optimizers.Adam(schedule, beta_1=config.beta1,
                                          beta_2=config.beta2, name=name)
    if config.mixed_precision == "float16":
        # dynamic loss scaling: the train step scales each loss (scale_loss)
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=name)
    return optimizer


def build_gan(config, strategy=None):
    """The compiled, fully built GAN of --model (MLCGAN, PairedGAN for pix2pix, StarGAN). Call inside ``strategy.scope()``."""
    if config.model == "copy":
        raise ValueError("--model=copy has no GAN to build (train writes its run folder only)")
    keras.utils.set_random_seed(config.seed)
    with policy_scope(config.mixed_precision), remat_scope(config.remat):
        gan = _build_networks(config)
    gan.compile(
        g_optimizer=build_optimizer(config, config.g_lr, "g_optimizer"),
        d_optimizer=build_optimizer(config, config.d_lr, "d_optimizer", config.n_critic),
        c_optimizer=build_optimizer(config, config.critic_lr, "c_optimizer", config.n_critic),
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    gan.build_all()
    return gan


def _build_networks(config):
    """The GAN model of --model with its networks (not compiled)."""
    weights = LossWeights(config.gan_loss, config.adv_weight, config.photo_weight,
                          config.variation_weight, config.l1_weight, config.gp_weight,
                          l1_all_levels=config.l1_levels == "all",
                          cls_weight=config.cls_weight, rec_weight=config.rec_weight,
                          colour_l1_weight=config.colour_l1_weight,
                          expression_weight=config.expression_weight,
                          mask_sparsity_weight=config.mask_sparsity_weight,
                          mask_smooth_weight=config.mask_smooth_weight,
                          mask_binary_weight=config.mask_binary_weight,
                          flow_smooth_weight=config.flow_smooth_weight,
                          warp_l1_weight=config.warp_l1_weight,
                          flow_target_weight=config.flow_target_weight,
                          mouth_critic_weight=config.mouth_critic_weight,
                          mouth_box=mouth_box_fractions(config.mouth_box),
                          mouth_l1_scale=config.mouth_l1_scale,
                          feature_match_weight=config.feature_match_weight)
    updates = dict(n_critic=config.n_critic, alternate=config.update_order == "d_then_g",
                   fused_passes=config.fused_passes)
    if config.model == "stargan":
        discriminator = StarDiscriminator(
            len(config.expressions), config.resolution, config.d_channels, config.d_downsamples,
            config.d_condition, config.spectral_norm, name="discriminator")
        gan = StarGAN(build_generator(config), discriminator, weights, seed=config.seed,
                      **updates)
    else:
        discriminator = PatchDiscriminator(
            config.resolution, config.d_channels, config.d_downsamples, config.d_condition,
            config.spectral_norm, name="discriminator")
        classifier = None
        if config.expression_weight:
            # E sees no condition: it must tell the expression from the image.
            classifier = StarDiscriminator(
                len(config.expressions), config.resolution, config.d_channels,
                config.d_downsamples, "none", config.spectral_norm, name="expression_classifier")
        if config.model == "pix2pix":
            gan = PairedGAN(build_generator(config), discriminator, weights, seed=config.seed,
                            expression_classifier=classifier, **updates)
        else:
            gan = MLCGAN(build_generator(config), discriminator, build_critics(config), weights,
                         seed=config.seed, expression_classifier=classifier, **updates)
    return gan

"""Every hyperparameter, defined once, and the one frozen config built from them.

Each entry of ``_SPEC`` becomes both an absl flag (with its help text) and a
field of the frozen dataclass ``Config``. ``validate`` checks a config up
front so that bad input is reported before anything is built or written.
Choices marked (paper) are fixed by the slides; (ours) and (peer) are open
choices, taken from the named peer where there is one.
"""

import dataclasses
import json
import math

from mlc_keras.errors import UserError
from mlc_keras.expressions import EXPRESSIONS

# The names registered in mlc_keras.data.sources (a test checks they agree; this module stays free
# of the data code so that it imports without TensorFlow or PIL).
DATASETS = ("synthetic", "london", "manifest", "rafd", "kdef", "jaffe", "ckplus", "cfee", "mmi", "yale",
            "folders", "tfrecord")
STRATEGIES = ("auto", "mirrored", "one_device", "multi_worker")
PRECISIONS = ("float32", "bfloat16", "float16")
FEATURE_ENCODERS = ("trained", "shared", "frozen")
MODELS = ("mlc", "pix2pix", "stargan", "copy")
UPDATE_ORDERS = ("joint", "d_then_g")
# The GAN loss forms; training/losses.py registers one implementation per name.
GAN_LOSSES = ("nonsaturating", "hinge", "lsgan", "wgan")

# (name, default, help)  -- the type of the default is the flag's type;
# tuples of ints / strings are comma-separated list flags.
_SPEC = (
    # --- run
    ("workdir", "", "Run folder: options.json, checkpoints, TensorBoard events, samples."),
    ("train_steps", 100000, "Total GENERATOR updates; a resumed run continues to this count. "
                            "One step = one G update = --n_critic updates of D and the critic "
                            "networks, each on its own batch, so a step consumes "
                            "batch_size x n_critic training pairs (images seen = train_steps x "
                            "batch_size x n_critic). The step is the G optimizer's iteration "
                            "counter: checkpoints (ckpt-STEP), resume, the data stream position, "
                            "TensorBoard, metrics.jsonl and the progress line all count it, so "
                            "they agree whatever --n_critic is. StarGAN's official 200k "
                            "iterations (D updates, n_critic 5) are --train_steps=40000 here."),
    ("batch_size", 16, "GLOBAL batch size (split across replicas; must divide evenly). (peer: StarGAN 16)"),
    ("seed", 0, "Seed of weights, data order, flips and the subject split."),
    ("strategy", "auto", "auto: MultiWorkerMirroredStrategy when TF_CONFIG names a cluster of "
                         "several tasks, else MirroredStrategy over all GPUs when there are "
                         "several, else one device; mirrored: always (also over logical CPU "
                         "devices); one_device; multi_worker: MultiWorkerMirroredStrategy over "
                         "the TF_CONFIG cluster (python -m mlc_keras.launch starts one locally)."),
    ("cpu_devices", 0, "Split the CPU into this many logical devices (0: leave as is). For testing "
                       "mirrored training without GPUs."),
    ("jit_compile", False, "XLA-compile the train step (single device only; ~1.2x on CPU)."),
    ("mixed_precision", "float32", "Compute dtype of every network: float32, bfloat16 (Keras "
                                   "mixed_bfloat16: the big lever on CPUs with AMX and on recent "
                                   "GPUs) or float16 (mixed_float16, with loss scaling for G, D "
                                   "and the critics). Variables, losses and the spectral-norm "
                                   "power iteration stay float32."),
    ("remat", False, "Gradient checkpointing: every conv-norm-activation block of G, D, the "
                     "critics and E keeps only its input for the backward pass and recomputes "
                     "the rest there (keras.remat): the same gradients in less memory (2.75 "
                     "instead of 3.1 GB at 128 px, batch 16) at 1.35x the step time "
                     "(BENCHMARKS.md, scale out). A resumed run may switch it."),
    ("steps_per_execution", 1, "Train steps per tf.function call (single device only)."),
    ("deterministic", False, "Enable TensorFlow op determinism (slower; for exact reruns)."),
    ("checkpoint_every", 500, "Save a checkpoint every N steps (and at the end)."),
    ("keep_checkpoints", 3, "Checkpoints kept in the workdir."),
    ("summary_every", 50, "Write TensorBoard scalars every N steps."),
    ("sample_every", 500, "Write the held-out sample grid every N steps (0: only at the end)."),
    ("num_samples", 4, "Held-out inputs (rows) in the sample grid."),
    ("verbose", 1, "Console output in real steps: 1 a progress line (rewritten in place on a "
                   "terminal, else a line every --summary_every steps), 2 always plain lines, "
                   "0 quiet."),
    ("model", "mlc", "mlc: the paper's multi-level critic GAN; pix2pix: the baseline (U-Net-style "
                     "G, PatchGAN D, L1 on the final image, no critic networks; use "
                     "configs/pix2pix.flags); stargan: the unpaired baseline (D with a domain "
                     "classifier, cycle reconstruction, no paired target; use "
                     "configs/stargan.flags); copy: the copy-the-source baseline (the "
                     "output is the input image, no weights; train writes the run folder "
                     "and a step-0 checkpoint without training, so python -m "
                     "mlc_keras.evaluate measures it like any run)."),
    # --- data
    ("dataset", "synthetic", "Data source: synthetic (embedded, procedural), london (Face Research "
                             "Lab London Set layout in --data_dir), manifest (CSV in --data_dir); "
                             "or a published layout in --data_dir, imported into --data_cache: "
                             "rafd, kdef, jaffe, ckplus, cfee, mmi (needs sessions_csv, so only "
                             "via data.sources.import_dataset), yale, folders "
                             "(<expression>/<subject>_<n>.jpg); tfrecord (the streamed shards and "
                             "tfrecords.json that python -m mlc_keras.data.to_tfrecord wrote to "
                             "--data_dir)."),
    ("data_dir", "", "london: the published folder; manifest: the CSV or its folder "
                     "(manifest.csv); synthetic: unused."),
    ("data_cache", "", "Where importers write aligned crops and manifests (default WORKDIR/data)."),
    ("synthetic_subjects", 200, "Identities rendered by the synthetic data set."),
    ("synthetic_resolution", 0, "Render size of the synthetic set (0: --resolution)."),
    ("synthetic_seed", -1, "Seed that draws the synthetic set's faces (-1: --seed). Pin it "
                           "(e.g. 0) to train several --seed values on the same faces."),
    ("london_use_templates", False, "Align London neutral photos with their template pupils "
                                    "instead of the detector."),
    ("london_register", False, "Warp each London smiling crop onto its neutral crop's geometry "
                               "outside the mouth (thin-plate spline on dlib's 68 landmarks, "
                               "data/register.py): the head moves between the two shots, and a "
                               "pixel loss against an unregistered target teaches two mouths."),
    ("london_register_anchors", "outside_mouth", "--london_register: the landmarks pinned to "
                                                 "the neutral shot: outside_mouth (all 48) or "
                                                 "rigid (upper jaw, nose bridge, eye corners; "
                                                 "the chin's drop and the eyes' squint stay in "
                                                 "the target)."),
    ("open_mouth_targets", (), "Expressions whose training targets must show an open mouth "
                               "(e.g. happy): a training pair whose target has such an "
                               "expression and lips closer than --mouth_open_threshold is "
                               "dropped (landmarks from the importer; --dataset=london). London's "
                               "smiles come in two kinds, lips apart with teeth and lips closed, "
                               "and an L1 to both from the same neutral face teaches their "
                               "average, a pale band. Held-out pairs are never filtered."),
    ("closed_mouth_targets", (), "Expressions whose training targets must show closed lips "
                                 "(e.g. happy): the complement of --open_mouth_targets; a "
                                 "training pair whose target has such an expression and lips "
                                 "apart by --mouth_open_threshold or more is dropped. A class "
                                 "may not be in both. Held-out pairs are never filtered."),
    ("mouth_open_threshold", 0.05, "--open_mouth_targets / --closed_mouth_targets: the inner-lip gap over the mouth's "
                                   "width (dlib points 61-63 to 67-65, over 48 to 54) at and "
                                   "above which a mouth counts as open."),
    ("test_subjects", (), "Subjects held out for testing, by id (overrides the manifest's split "
                          "column and --test_fraction); a listed id missing from the data is an "
                          "error."),
    ("import_resolution", 256, "Size of the aligned crops an importer writes."),
    ("expressions", EXPRESSIONS, "The model's expression classes, in id order. (paper: 7 classes)"),
    ("source_expression", "neutral", "Expression of the source image of a pair; 'any' pairs every "
                                     "image with every other of its subject. (paper: neutral)"),
    ("identity_pairs", True, "Also train source -> same expression (the source itself as target)."),
    ("test_fraction", 0.1, "Fraction of subjects held out (when the manifest has no split column)."),
    ("flip", True, "Random horizontal flip, identical for both images of a pair. (paper)"),
    ("skip_bad_images", False, "Skip unreadable images and subjects without a source image, and "
                               "report the count, instead of stopping."),
    # --- model (paper: 128 px output with decoder levels 64 and 32)
    ("resolution", 128, "Output resolution (64, 128 or 256; any power of two >= 16). (paper: 128)"),
    ("g_channels", 64, "Generator width after the stem. (peer: StarGAN 64)"),
    ("g_downsamples", 2, "Encoder stride-2 convs; decoder levels are R, R/2, .. R/2^D. (paper: 2)"),
    ("g_res_blocks", 6, "Residual blocks at the bottleneck. (peer: StarGAN 6)"),
    ("g_norm", "instance", "Generator normalisation: instance, batch or none. (peer: StarGAN)"),
    ("g_skips", True, "U-Net skips from encoder to decoder levels. (ours, pix2pix-like)"),
    ("g_conditioning", "film", "How G sees the expression: input (tiled onto the input, "
                               "StarGAN), input_and_decoder (also tiled before each decoder "
                               "block), film (tiled input + FiLM scale/shift after every "
                               "residual and decoder block). (ours: film)"),
    ("g_output", "attention", "G's image heads: direct (tanh) or attention (GANimation: mask * "
                              "input + (1 - mask) * colour at every level). (peer: GANimation)"),
    ("g_warp", False, "Attention heads: the final level also predicts a flow field, and the mask "
                      "blends the colour map with the input moved along it (the photo's own "
                      "lips move with the smile instead of showing through the new ones; "
                      "ours, after warp-guided face animation). The flow head starts at zero, "
                      "so --init_generator may name a generator without one."),
    ("max_flow", 0.08, "--g_warp: largest displacement, as a fraction of the image size."),
    ("g_shading", False, "--g_warp: the final level also predicts a smooth log-gain per colour "
                         "channel (8 px cells at the model's resolution, interpolated; at most "
                         "+-0.5) that multiplies the moved input: shading of cheeks and folds "
                         "on the photo's own pixels, not redrawn by the colour map (ours). "
                         "Starts at zero, so --init_generator may name a generator without it."),
    ("g_flow_snap", False, "--g_warp: where the vertical flow tears apart (more than 1.5 px of "
                           "the resolution within 3 px: the lips of a closing mouth), each "
                           "pixel of the tear takes the motion of the nearer side, so none "
                           "samples what the tear skips (teeth). No weights: may be turned on "
                           "for a trained generator (ours)."),
    ("motion_box", "", "--g_warp: x0,y0,x1,y1 fractions of the aligned face outside which the "
                       "flow and the --g_shading gain fade to exactly 0 (a 0.06 soft edge), so "
                       "only the mouth and cheeks move; empty: the whole face (ours). "
                       "E.g. 0.22,0.52,0.78,0.9."),
    ("d_channels", 64, "Discriminator and critic width. (peer: pix2pix 64)"),
    ("d_downsamples", 3, "PatchGAN stride-2 layers of the main discriminator. (peer: pix2pix 70x70)"),
    ("d_condition", "both", "What D and the photo critics see besides the image: none, source, "
                            "expression or both. (ours; the slides draw no condition)"),
    ("spectral_norm", True, "Spectral normalisation in D, critics and f. (ours)"),
    ("critic_levels", (32, 64), "Decoder levels (px) that get a critic network; empty: none. "
                                "(paper: 32,64; ablations 32 / 64)"),
    ("critic_downsamples", 2, "PatchGAN stride-2 layers of each critic."),
    ("photo_critic", True, "Photo-realistic discriminator at each critic level. (paper)"),
    ("variation_critic", True, "Variation-realistic discriminator at each critic level. (paper)"),
    ("feature_encoder", "trained", "How f of the variation critic is obtained: trained (one per "
                                   "level, trained with the critics), shared (one trained f for all "
                                   "levels), frozen (random, never trained)."),
    ("feature_channels", 64, "Channels of f's features."),
    # --- losses
    ("gan_loss", "nonsaturating", "nonsaturating (paper), hinge, lsgan or wgan (with gradient penalty)."),
    ("adv_weight", 1.0, "Weight of D's adversarial term in L_G."),
    ("photo_weight", 1.0, "Weight of each photo-realistic critic term in L_G."),
    ("variation_weight", 1.0, "Weight of each variation-realistic critic term in L_G."),
    ("l1_weight", 100.0, "Weight of the L1 loss to the real target at every level. (peer: pix2pix 100)"),
    ("colour_l1_weight", 0.0, "Attention heads: weight of an L1 loss between the final head's colour "
                              "map and the target, everywhere (ours). Without it the colour map is "
                              "trained only where the mask lets it through; on London the mask "
                              "saturated to 'keep the source' and G stayed the identity (step "
                              "1,000 of a 128 px run: largest change 0.6 %)."),
    ("expression_weight", 0.0, "Weight of an expression-classification loss on G's final image "
                               "(ours; StarGAN's auxiliary classifier as its own network E, "
                               "trained with the critics on the real sources and targets; G "
                               "gets cross-entropy(E(G(x, c)), c)). 0: no E."),
    ("mask_sparsity_weight", 0.0, "Attention heads: weight of the mean changed area, "
                                  "mean(1 - keep mask), of the final head (sparse change keeps "
                                  "the sharp source pixels). (peer: GANimation's mask "
                                  "regulariser, here on the change rather than on the keep mask)"),
    ("mask_smooth_weight", 0.0, "Attention heads: weight of the total variation of the final keep "
                                "mask (smooth masks, no speckles). (peer: GANimation 1e-5 x 128^2)"),
    ("mask_binary_weight", 0.0, "Attention heads: weight of mean(4 keep (1 - keep)) on the final "
                                "keep mask (1 at 0.5, 0 at 0 or 1): pushes each pixel to keep the "
                                "photo or to take the colour head outright; a half-transparent "
                                "mask over a moved mouth shows both mouths (doubled lip lines)."),
    ("mouth_critic_weight", 0.0, "Weight in L_G of a mouth critic: a photo critic (PatchGAN, "
                                 "conditioned like the others) on the --mouth_box crop of the "
                                 "final image against the same crop of the real target, trained "
                                 "with the level critics (ours, after the local discriminators "
                                 "of face inpainting). 0: none. --model=mlc only."),
    ("mouth_box", "0.25,0.5,0.75,1.0", "The mouth critic's and --mouth_l1_scale's box in the "
                                       "aligned face, as fractions x0,y0,x1,y1 of the image; square, "
                                       "a whole number of pixels at every decoder level it is used at. "
                                       "The default holds dlib's mouth landmarks of 98 % of the London "
                                       "crops (x 0.32-0.68, y 0.66-0.86) with the cheeks and chin."),
    ("mouth_l1_scale", 1.0, "Multiplies the pixel L1 (every level) and the colour-map L1 inside "
                            "--mouth_box: below 1 the mouth is left more to the critics, whose "
                            "verdict is not the average of two mouths. (ours)"),
    ("feature_match_weight", 0.0, "Weight in L_G of a feature-matching loss: the L1 between the "
                                  "main D's block features of the real target and of the "
                                  "generated image, averaged over D's stride-2 blocks (peer: "
                                  "pix2pixHD, weight 10). A paired loss that D's features make "
                                  "sensitive to texture; with --mouth_l1_scale below 1 it takes "
                                  "over the mouth from the pixel L1. 0: off. --model=mlc or "
                                  "pix2pix (a paired target)."),
    ("flow_smooth_weight", 0.0, "--g_warp: weight of the total variation of the flow field "
                                "(a smooth motion, no tearing)."),
    ("warp_l1_weight", 0.0, "--g_warp: weight of an L1 between the source moved by the flow "
                            "alone and the target, at every decoder level (a photometric "
                            "flow loss, as in unsupervised optical flow: the motion is learnt "
                            "from coarse levels too, whatever the mask does)."),
    ("flow_target_weight", 0.0, "--g_warp: weight of an L1 (in pixels of --resolution) between "
                                "the flow and the landmark motion from source to target (a "
                                "thin-plate spline through dlib's 68 points; the London importer "
                                "stores them): supervised motion of the lips and cheeks, where "
                                "the photometric loss finds too little."),
    ("flow_target_fold", False, "--flow_target_weight: where the mouth closes (a smile with "
                                "teeth to neutral), split the landmark motion along the target's "
                                "lip line, each side sampling its own lip, so the warp covers "
                                "the teeth instead of squeezing them into a line "
                                "(register.landmark_flow)."),
    ("stages", "", "A staged recipe in one resumable command: stages separated by ';', each "
                   "a space-separated list of name=value overrides applied on top of the "
                   "previous stage's options (the first on top of these flags). Each stage "
                   "continues the previous stage's generator with fresh D, critics, E, "
                   "optimizers and learning-rate schedule, in WORKDIR/stageK; stages.json "
                   "records the plan and the training seconds. Export, evaluate and "
                   "synthesize take WORKDIR and use the last stage. E.g. "
                   "--stages=\"expression_weight=1 train_steps=2000; mask_sparsity_weight=5 "
                   "train_steps=300\" (configs/london128_recipe.flags)."),
    ("init_generator", "", "A new run starts G from this .keras generator (same architecture), "
                           "e.g. mlc_keras/weights/london_neutral_happy_128.keras; D and the "
                           "critics start fresh. Ignored when the run resumes."),
    ("l1_levels", "all", "L1 to the target at every decoder level (all; ours) or on the final "
                         "image only (final; pix2pix)."),
    ("cls_weight", 1.0, "--model=stargan: weight of the domain classification losses. (peer: StarGAN 1)"),
    ("rec_weight", 10.0, "--model=stargan: weight of the cycle reconstruction L1. (peer: StarGAN 10)"),
    ("gp_weight", 10.0, "Gradient-penalty weight with --gan_loss=wgan. (peer: StarGAN 10)"),
    # --- optimisation
    ("optimizer", "adam", "adam or sgd (sgd is for exact reduction tests)."),
    ("g_lr", 2e-4, "Generator learning rate. (peer: pix2pix 2e-4)"),
    ("d_lr", 2e-4, "Discriminator learning rate."),
    ("critic_lr", 2e-4, "Critic networks' learning rate (photo, variation and f)."),
    ("beta1", 0.5, "Adam beta1. (peer: pix2pix/StarGAN 0.5)"),
    ("beta2", 0.999, "Adam beta2."),
    ("lr_decay_start", 0.5, "Fraction of train_steps after which every learning rate decays "
                            "linearly to 0 at train_steps (1.0: constant). D and the critics "
                            "follow the same fraction of their own n_critic x train_steps "
                            "updates. (peer: StarGAN decays over the last 100k of 200k "
                            "iterations, pix2pix over the second half of its epochs: 0.5)"),
    ("n_critic", 1, "Updates of D and the critic networks (and E) per G update, each on a fresh "
                    "batch; G is then updated once, on the last of those batches, against the "
                    "updated D. Needs --update_order=d_then_g when > 1. (peer: StarGAN 5, "
                    "pix2pix 1)"),
    ("fused_passes", False, "Call D, each photo and variation critic and each f once per step on "
                            "real and fake (and source) images stacked on the batch axis, "
                            "instead of once per image set (issue 14's speed lever; the "
                            "spectral-norm estimates then take one power iteration per step "
                            "instead of one per call). --model=stargan stacks nothing."),
    ("update_order", "joint", "joint: one forward pass, then G, D and the critics are updated "
                              "simultaneously from one tape (ours: the cheapest); d_then_g: D "
                              "and the critics are updated first (--n_critic times), then G is "
                              "computed again against the updated D and updated (the official "
                              "pix2pix and StarGAN solvers)."),
)

_FIELD_TYPES = {}


def _type_of(default):
    if isinstance(default, tuple):
        return tuple
    return type(default)


def _make_config_class():
    fields = []
    for name, default, _ in _SPEC:
        _FIELD_TYPES[name] = _type_of(default)
        fields.append((name, _type_of(default), dataclasses.field(default=default)))
    return dataclasses.make_dataclass("Config", fields, frozen=True)


Config = _make_config_class()
Config.__doc__ = "The frozen, validated run configuration. See config._SPEC for each field."

# Options a resumed run may change without invalidating its checkpoint.
RUN_CONTROL_FIELDS = frozenset({
    "workdir", "train_steps", "strategy", "cpu_devices", "jit_compile", "steps_per_execution",
    "remat", "deterministic", "checkpoint_every", "keep_checkpoints", "summary_every",
    "sample_every", "num_samples", "verbose", "data_dir", "data_cache", "skip_bad_images",
    "init_generator",  # read only when a run starts
    "stages",  # a staged run's own stage folders hold its stages' options
})


class ConfigError(UserError, ValueError):
    """A flag value is unusable; the message names the flag."""


def define_spec(spec, flag_values=None):
    """Defines one absl flag per ``(name, default, help[, choices])`` entry
    (idempotent). The default's type picks the flag type; tuples are
    comma-separated lists; a fourth element makes an enum. The one way every
    command defines its flags (call it under ``if __name__ == "__main__"``,
    since commands share names such as --model and --output)."""
    from absl import flags

    fv = flags.FLAGS if flag_values is None else flag_values
    for entry in spec:
        name, default, help_text = entry[:3]
        if name in fv:
            continue
        if len(entry) > 3:
            flags.DEFINE_enum(name, default, list(entry[3]), help_text, flag_values=fv)
        elif isinstance(default, bool):
            flags.DEFINE_boolean(name, default, help_text, flag_values=fv)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text, flag_values=fv)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text, flag_values=fv)
        elif isinstance(default, tuple):
            flags.DEFINE_list(name, [str(v) for v in default], help_text, flag_values=fv)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values=fv)


def define_flags(flag_values=None):
    """Defines the training flags: one per config field (idempotent)."""
    define_spec(_SPEC, flag_values)


def _coerce(name, value):
    kind = _FIELD_TYPES[name]
    if kind is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",")]
        items = [str(v).strip() for v in value if str(v).strip()]
        if name == "critic_levels":
            try:
                return tuple(sorted({int(v) for v in items}))
            except ValueError:
                raise ConfigError(f"--critic_levels={','.join(items)}: expected integers "
                                  "(pixel sizes such as 32,64) or nothing") from None
        return tuple(items)
    if kind is float:
        return float(value)
    if kind is int and not isinstance(value, bool):
        return int(value)
    return value


def config_from_flags(flag_values=None, **overrides):
    """Builds and validates a Config from parsed absl flags (+ overrides)."""
    from absl import flags

    fv = flags.FLAGS if flag_values is None else flag_values
    values = {name: _coerce(name, fv[name].value) for name, _, _ in _SPEC}
    values.update({k: _coerce(k, v) for k, v in overrides.items()})
    return validate(Config(**values))


def make_config(**overrides):
    """A validated Config from defaults plus keyword overrides (for library use and tests)."""
    unknown = set(overrides) - set(_FIELD_TYPES)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return validate(Config(**{k: _coerce(k, v) for k, v in overrides.items()}))


def validate(config):
    """Checks every field; raises ConfigError naming the flag and the problem."""
    from mlc_keras.expressions import UnknownExpressionError, canonical_expression
    from mlc_keras.models.critics import D_CONDITIONS
    from mlc_keras.models.generator import CONDITIONINGS, OUTPUTS, decoder_levels
    from mlc_keras.models.layers import NORMS

    c = config

    def choice(name, options):
        if getattr(c, name) not in options:
            raise ConfigError(f"--{name}={getattr(c, name)}: expected one of {', '.join(options)}")

    def positive(*names):
        for name in names:
            if getattr(c, name) <= 0:
                raise ConfigError(f"--{name}={getattr(c, name)}: must be positive")

    choice("model", MODELS)
    choice("l1_levels", ("all", "final"))
    choice("dataset", DATASETS)
    choice("strategy", STRATEGIES)
    choice("mixed_precision", PRECISIONS)
    choice("london_register_anchors", ("outside_mouth", "rigid"))
    choice("feature_encoder", FEATURE_ENCODERS)
    choice("gan_loss", GAN_LOSSES)
    choice("g_norm", NORMS)
    choice("g_conditioning", CONDITIONINGS)
    choice("g_output", OUTPUTS)
    choice("d_condition", D_CONDITIONS)
    choice("optimizer", ("adam", "sgd"))
    choice("update_order", UPDATE_ORDERS)
    if c.n_critic < 1:
        raise ConfigError(f"--n_critic={c.n_critic}: must be at least 1")
    if c.n_critic > 1 and c.update_order != "d_then_g":
        raise ConfigError(f"--n_critic={c.n_critic} needs --update_order=d_then_g (D is updated "
                          "n_critic times before G)")
    positive("train_steps", "batch_size", "checkpoint_every", "keep_checkpoints", "summary_every",
             "g_channels", "d_channels", "feature_channels", "steps_per_execution",
             "synthetic_subjects", "import_resolution", "g_lr", "d_lr", "critic_lr")
    for name, kind in _FIELD_TYPES.items():
        if kind is float and not math.isfinite(getattr(c, name)):
            raise ConfigError(f"--{name}={getattr(c, name)}: must be a finite number")
    for name in ("colour_l1_weight", "mask_sparsity_weight", "mask_smooth_weight",
                 "mask_binary_weight", "g_warp"):
        if getattr(c, name) and c.g_output != "attention":
            raise ConfigError(f"--{name} needs --g_output=attention (an attention head to train)")
    for name in ("flow_smooth_weight", "warp_l1_weight", "flow_target_weight", "g_shading",
                 "motion_box", "g_flow_snap"):
        if getattr(c, name) and not c.g_warp:
            raise ConfigError(f"--{name} needs --g_warp (a flow field to train)")
    if c.flow_target_fold and not c.flow_target_weight:
        raise ConfigError("--flow_target_fold needs --flow_target_weight (a flow target to fold)")
    if c.flow_target_weight and c.dataset == "tfrecord":
        raise ConfigError("--flow_target_weight needs each pair's face landmarks, which TFRecord "
                          "shards do not carry; train from the London import (--dataset=london)")
    if not 0.0 < c.max_flow <= 0.5:
        raise ConfigError(f"--max_flow={c.max_flow}: must be a fraction of the image size in "
                          "(0, 0.5]")
    box = mouth_box_fractions(c.mouth_box)
    if c.motion_box:
        mouth_box_fractions(c.motion_box, "motion_box")
    if c.mouth_critic_weight and c.model != "mlc":
        raise ConfigError("--mouth_critic_weight: only --model=mlc trains critic networks")
    if c.mouth_critic_weight or c.mouth_l1_scale != 1.0:
        side_x, side_y = (box[2] - box[0]) * c.resolution, (box[3] - box[1]) * c.resolution
        if abs(side_x - side_y) > 1e-6 or abs(side_x - round(side_x)) > 1e-6 or side_x < 8:
            raise ConfigError(f"--mouth_box={c.mouth_box}: at --resolution={c.resolution} it is "
                              f"{side_x:g} x {side_y:g} px; it must be square, a whole number "
                              "of pixels and at least 8")
    if c.feature_match_weight and c.model not in ("mlc", "pix2pix"):
        raise ConfigError(f"--feature_match_weight: --model={c.model} has no paired target to "
                          "match (use --model=mlc or pix2pix)")
    if c.expression_weight and c.model == "stargan":
        raise ConfigError("--expression_weight: --model=stargan already classifies in D "
                          "(use --cls_weight)")
    for name in ("cpu_devices", "sample_every", "num_samples", "g_res_blocks", "l1_weight",
                 "colour_l1_weight", "expression_weight", "mask_sparsity_weight",
                 "mask_smooth_weight", "mask_binary_weight", "flow_smooth_weight",
                 "warp_l1_weight", "flow_target_weight", "mouth_critic_weight", "mouth_l1_scale",
                 "feature_match_weight", "adv_weight", "photo_weight", "variation_weight", "gp_weight", "cls_weight",
                 "rec_weight"):
        if getattr(c, name) < 0:
            raise ConfigError(f"--{name}={getattr(c, name)}: must not be negative")
    if not 0.0 <= c.test_fraction < 1.0:
        raise ConfigError(f"--test_fraction={c.test_fraction}: must be in [0, 1)")
    if not 0.0 <= c.lr_decay_start <= 1.0:
        raise ConfigError(f"--lr_decay_start={c.lr_decay_start}: must be in [0, 1]")
    if c.dataset in ("london", "manifest", "tfrecord") and not c.data_dir:
        raise ConfigError(f"--dataset={c.dataset} needs --data_dir")
    r = c.resolution
    if r < 16 or r & (r - 1):
        raise ConfigError(f"--resolution={r}: must be a power of two >= 16 (64, 128, 256)")
    max_down = int(math.log2(r)) - 2
    if not 1 <= c.g_downsamples <= max_down:
        raise ConfigError(f"--g_downsamples={c.g_downsamples}: a {r} px decoder supports 1..{max_down}")
    levels = decoder_levels(r, c.g_downsamples)
    bad = [lv for lv in c.critic_levels if lv not in levels]
    if bad:
        raise ConfigError(
            f"--critic_levels={','.join(map(str, c.critic_levels))}: the decoder at --resolution={r} "
            f"with --g_downsamples={c.g_downsamples} produces levels {','.join(map(str, levels))}; "
            f"{','.join(map(str, bad))} is not one of them")
    if c.model == "pix2pix" and (c.critic_levels or c.l1_levels != "final"):
        raise ConfigError("--model=pix2pix has no critic networks and L1 on the final image only: "
                          "use --critic_levels= --l1_levels=final (configs/pix2pix.flags)")
    if c.model == "stargan" and (c.critic_levels or c.d_condition != "none"):
        raise ConfigError("--model=stargan has no critic networks and its D classifies the expression "
                          "itself: use --critic_levels= --d_condition=none (configs/stargan.flags)")
    if c.critic_levels and not (c.photo_critic or c.variation_critic):
        raise ConfigError("--critic_levels is set but both --photo_critic and --variation_critic are off")
    if c.synthetic_seed < -1:
        raise ConfigError(f"--synthetic_seed={c.synthetic_seed}: must be >= 0, or -1 for --seed")
    if c.synthetic_resolution and c.synthetic_resolution < r:
        raise ConfigError(f"--synthetic_resolution={c.synthetic_resolution}: smaller than --resolution={r}")
    if len(c.expressions) < 2:
        raise ConfigError("--expressions: need at least two classes")
    try:
        canon = [canonical_expression(e, "--expressions") for e in c.expressions]
        if c.source_expression != "any":
            canonical_expression(c.source_expression, "--source_expression")
    except UnknownExpressionError as e:
        raise ConfigError(str(e)) from None
    if len(set(canon)) != len(canon):
        raise ConfigError(f"--expressions={','.join(c.expressions)}: repeated class")
    if canon != list(c.expressions):
        c = dataclasses.replace(c, expressions=tuple(canon))
    if c.source_expression != "any":
        source = canonical_expression(c.source_expression)
        if source not in canon:
            raise ConfigError(f"--source_expression={c.source_expression}: not among --expressions")
        c = dataclasses.replace(c, source_expression=source)
    for name in ("open_mouth_targets", "closed_mouth_targets"):
        classes = getattr(c, name)
        if not classes:
            continue
        try:
            wanted = [canonical_expression(e, f"--{name}") for e in classes]
        except UnknownExpressionError as e:
            raise ConfigError(str(e)) from None
        missing = [e for e in wanted if e not in canon]
        if missing:
            raise ConfigError(f"--{name}={','.join(classes)}: "
                              f"{', '.join(missing)} not among --expressions")
        if not 0 < c.mouth_open_threshold < 1:
            raise ConfigError(f"--mouth_open_threshold={c.mouth_open_threshold}: must lie in (0, 1)")
        c = dataclasses.replace(c, **{name: tuple(wanted)})
    both = sorted(set(c.open_mouth_targets) & set(c.closed_mouth_targets))
    if both:
        raise ConfigError(f"--open_mouth_targets and --closed_mouth_targets both name {', '.join(both)}: "
                          "a class's targets cannot be both open and closed")
    if c.steps_per_execution > 1 and c.strategy in ("mirrored", "multi_worker"):
        raise ConfigError("--steps_per_execution > 1 fails under MirroredStrategy (Keras 3.15); use 1")
    if c.jit_compile and c.strategy in ("mirrored", "multi_worker"):
        raise ConfigError("--jit_compile fails under MirroredStrategy (Keras 3.15); use --strategy=one_device or drop it")
    return c


def mouth_box_fractions(text, flag="mouth_box"):
    """'x0,y0,x1,y1' (fractions of the aligned image) -> a tuple of 4 floats,
    0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1; ConfigError (naming --``flag``)
    otherwise."""
    try:
        box = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
        raise ConfigError(f"--{flag}={text}: expected x0,y0,x1,y1 fractions of the image with "
                          "0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, e.g. 0.25,0.5,0.75,1.0")
    return box


def to_json(config):
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True)


def from_dict(values):
    """Config from a dict (options.json); unknown keys are an error."""
    unknown = set(values) - set(_FIELD_TYPES)
    if unknown:
        raise ConfigError(f"options contain unknown field(s): {', '.join(sorted(unknown))}")
    return validate(Config(**{k: _coerce(k, v) for k, v in values.items()}))


def model_differences(old, new):
    """Fields (other than run control) whose values differ between two configs."""
    return sorted(
        name for name, _, _ in _SPEC
        if name not in RUN_CONTROL_FIELDS and getattr(old, name) != getattr(new, name)
    )

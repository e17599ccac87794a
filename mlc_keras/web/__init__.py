"""The web demo (``python -m mlc_keras.demo``): one page and an HTTP API over synthesis.

May import inference/, data/align (photo reading and face detection), images,
expressions and errors; nothing of training/ or models/ (models load through
``inference.loading``). Flask is imported by ``web.app`` only.
"""

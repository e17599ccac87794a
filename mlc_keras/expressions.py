"""The expression vocabulary and each data set's names for it.

The paper's seven classes are the default vocabulary. Ids are positions in
``EXPRESSIONS``; every importer maps its data set's own names through
``canonical_expression`` so that an unknown name fails loudly, naming itself.
"""

from mlc_keras.errors import UserError

EXPRESSIONS = (
    "neutral",
    "angry",
    "disgusted",
    "fearful",
    "happy",
    "sad",
    "surprised",
)

# Spellings used by published data sets (lower-case) -> our class name.
_ALIASES = {
    "neutral": "neutral",
    "ne": "neutral",
    "neu": "neutral",
    "angry": "angry",
    "anger": "angry",
    "an": "angry",
    "ang": "angry",
    "disgusted": "disgusted",
    "disgust": "disgusted",
    "di": "disgusted",
    "dis": "disgusted",
    "fearful": "fearful",
    "fear": "fearful",
    "afraid": "fearful",
    "fe": "fearful",
    "af": "fearful",
    "happy": "happy",
    "happiness": "happy",
    "smiling": "happy",
    "smile": "happy",
    "ha": "happy",
    "hap": "happy",
    "sad": "sad",
    "sadness": "sad",
    "sa": "sad",
    "surprised": "surprised",
    "surprise": "surprised",
    "su": "surprised",
    "sur": "surprised",
}


class UnknownExpressionError(UserError, ValueError):
    """A data set or a user named an expression outside the vocabulary."""


def canonical_expression(name, source="expression"):
    """Maps a data set's expression name to one of ``EXPRESSIONS``.

    Args:
      name: the name as written by the data set or the user (any case).
      source: what the name came from, used in the error message.

    Raises:
      UnknownExpressionError: naming the input and the known classes.
    """
    key = str(name).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise UnknownExpressionError(
        f"{source}: unknown expression {name!r}; known: {', '.join(EXPRESSIONS)}"
    )


def expression_id(name, vocabulary=EXPRESSIONS, source="expression"):
    """Returns the integer id of ``name`` in ``vocabulary``."""
    canonical = canonical_expression(name, source)
    if canonical not in vocabulary:
        raise UnknownExpressionError(
            f"{source}: expression {name!r} is not among this model's classes "
            f"({', '.join(vocabulary)})"
        )
    return vocabulary.index(canonical)


def parse_expression_list(text, vocabulary=EXPRESSIONS):
    """Parses ``"happy,sad"`` or ``"all"`` into a list of class names."""
    text = (text or "").strip()
    if text.lower() == "all":
        return list(vocabulary)
    names = [t for t in (p.strip() for p in text.split(",")) if t]
    if not names:
        raise UnknownExpressionError("expressions: empty list; give names or 'all'")
    return [vocabulary[expression_id(n, vocabulary)] for n in names]

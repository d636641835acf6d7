"""Synthetic keyword-spotting corpora spoken by offline TTS engines, in the Speech Commands layout.

Typical use::

    from lmustream.data.synth import SynthConfig, synthesize_corpus
    manifest = synthesize_corpus(SynthConfig(out_dir="synth_sc", words="yes,no,up", renderings_per_word=500))

Modules: ``engines`` (espeak-ng, flite, festival, Piper behind one interface), ``effects``
(vocal tract, time stretch, reverberation, trimming), ``speakers`` (speakers, splits,
rendering plan), ``render`` (one clip), ``noise`` (background noise), ``corpus`` (the
writer) and ``cli`` (``lmustream data synth``).
"""

from lmustream.data.synth.corpus import SynthConfig, resolve_engines, synthesize_corpus, validate_words
from lmustream.data.synth.engines import (Engine, EngineError, Voice, available_engines, get_engine)
from lmustream.data.synth.render import render_clip
from lmustream.data.synth.speakers import Speaker, make_speakers

__all__ = ["SynthConfig", "synthesize_corpus", "validate_words", "resolve_engines", "Engine", "EngineError",
           "Voice", "available_engines", "get_engine", "render_clip", "Speaker", "make_speakers"]

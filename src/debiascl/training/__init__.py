"""Training, by layer: :mod:`~debiascl.training.run` (``train()``: one run of the loop, or the
driver of a method's stages), :mod:`~debiascl.training.loop` (the loop: ``StepRunner``,
``Trainer``) and :mod:`~debiascl.training.build` (the data, views, method and optimizers of a
run, from its config). The public entry is :mod:`debiascl.train` (``debiascl.train(...)``).

This package imports none of its modules: :mod:`debiascl.jtt` imports the loop, and the run
entry imports JTT's stages, so importing the run here would make the loop's import cyclic.
"""

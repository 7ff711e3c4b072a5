"""Natural-image restoration: degradation operators, classical baselines, photographs and training data.

:mod:`.degradations` holds the forward models (bicubic downsampling, FFT blur, inpainting masks,
additive noise, low light) as :class:`~scorerecon.models.guidance.LinearOperator` objects where
they are linear, each with the cheap SVD the DDRM-style solver needs; :mod:`.baselines` the
classical restorers (scikit-image); :mod:`.photos` the registry photographs of ``make photos``
(catalogue, licences, train / held-out split); :mod:`.datasets` the patch datasets the priors
train on. The restoration problems themselves live in :mod:`scorerecon.pipelines.tasks.natural`.
"""

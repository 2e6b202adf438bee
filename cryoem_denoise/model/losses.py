"""The WGAN losses of the paper, written once in ``keras.ops`` for both training steps.

* critic: ``L_D = mean D(y, G(y)) - mean D(y, x)`` (Eq. 6 with the sign WGAN minimises);
* generator: ``L_G = -mean D(y, G(y)) + lambda * L_content`` with the gray constraint
  ``L_content`` (Eq. 8): the per-image sum of squared errors, by default on the model's
  [-1, 1] scale (``gray_scale='unit255'`` uses the [0, 255] scale; ``gray_reduction='mean'``
  the per-image mean).

With ``gradient_penalty`` λ > 0 (WGAN-GP, Gulrajani et al. 2017, "Improved training of
Wasserstein GANs") the critic is kept near 1-Lipschitz by a penalty instead of weight
clipping: ``L_D + λ · mean_i (‖∇_x̂ D(y, x̂_i)‖₂ − 1)²`` at ``x̂_i = ε_i x_i + (1 − ε_i) G(y_i)``,
``ε_i`` uniform on [0, 1] per example (:func:`interpolate`, :func:`gradient_penalty`). D is
the example's mean PatchGAN score (as in the losses) and the gradient is taken with respect
to the candidate image only, not the noisy image it is conditioned on. Each backend's step
draws ``ε`` and takes the gradient; the arithmetic is here, in float32.

Losses are averaged over the *global* batch (``global_batch``): a replica of a
``tf.distribute`` step divides its share by the whole batch, so the summed replicas equal one
device; on JAX the batch is global already and ``global_batch`` is its size.
"""

from cryoem_denoise.runtime import backend

backend.import_quietly()  # checks the backend; keeps its start-up notices off stderr

from keras import ops  # noqa: E402


def to_model_scale(images):
    """[0, 255] → [-1, 1]."""
    return images / 127.5 - 1.0


def from_model_scale(images):
    """[-1, 1] → [0, 255]."""
    return (images + 1.0) * 127.5


def critic_input(noisy, image, conditional):
    """What the critic judges: the candidate, beside the noisy input if ``conditional``.

    Only the noisy image's own channels are shown (not a generator's noise-level map).
    """
    image = ops.cast(image, noisy.dtype)
    noisy = noisy[..., :image.shape[-1]]
    return ops.concatenate([noisy, image], axis=-1) if conditional else image


def per_example_score(scores):
    """Mean PatchGAN score of each image of a batch, in float32."""
    return ops.mean(ops.cast(scores, "float32"), axis=(1, 2, 3))


def gray_constraint(clean, fake, scale="model", reduction="sum"):
    """Per-image gray constraint between ``clean`` and ``fake`` (both on [-1, 1])."""
    diff = ops.cast(fake, "float32") - ops.cast(clean, "float32")
    if scale == "unit255":
        diff = diff * 127.5
    sq = ops.square(diff)
    return ops.sum(sq, axis=(1, 2, 3)) if reduction == "sum" else ops.mean(sq, axis=(1, 2, 3))


def crop_weights(noisy, clean, weighting):
    """Weight of each crop in the gray constraint (mean 1 over the batch), or ``None``.

    ``'inverse_variance'``: 1 / the crop's noise variance, measured as the mean squared
    difference of its noisy input and target (exactly the added noise's variance under the
    paper's protocol, twice the noise's for Noise2Noise pairs: only ratios matter), so an
    error at sigma 10 costs as much as a 8x larger one at sigma 80. ``'inverse_sigma'``:
    1 / the noise's standard deviation, half-way (on a log scale) between no weighting and
    ``'inverse_variance'``. Not differentiated.
    """
    if weighting == "none":
        return None
    y = ops.cast(noisy[..., :clean.shape[-1]], "float32")
    var = ops.maximum(ops.mean(ops.square(y - ops.cast(clean, "float32")), axis=(1, 2, 3)), 1e-8)
    w = 1.0 / (var if weighting == "inverse_variance" else ops.sqrt(var))
    return ops.stop_gradient(w / ops.mean(w))


def weighted_content(clean, fake, noisy, train_cfg):
    """Per-crop gray constraint, times :func:`crop_weights` of ``train_cfg.loss_weighting``."""
    content = gray_constraint(clean, fake, train_cfg.gray_scale, train_cfg.gray_reduction)
    w = crop_weights(noisy, clean, train_cfg.loss_weighting)
    return content if w is None else content * w


def batch_average(per_example, global_batch):
    """Sum of per-example values over ``global_batch`` (this replica's share of the mean)."""
    return ops.sum(per_example) / global_batch


def critic_loss(real_scores, fake_scores, global_batch):
    """WGAN critic loss from the critic's raw outputs on real and generated images."""
    return batch_average(per_example_score(fake_scores) - per_example_score(real_scores),
                         global_batch)


def interpolate(real, fake, eps):
    """``eps * real + (1 - eps) * fake`` in float32: the points WGAN-GP penalises.

    Parameters
    ----------
    real, fake : tensor
        ``(n, h, w, c)`` targets and generator outputs, on [-1, 1].
    eps : tensor
        ``(n, 1, 1, 1)`` weights in [0, 1], one per example.
    """
    real, fake = ops.cast(real, "float32"), ops.cast(fake, "float32")
    eps = ops.cast(eps, "float32")
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(grads, weight, global_batch):
    """This replica's share of ``weight * mean_i (‖grads_i‖₂ − 1)²`` (WGAN-GP), in float32.

    Parameters
    ----------
    grads : tensor
        ``(n, h, w, c)``: the gradient of each example's critic score with respect to its
        interpolated image (:func:`interpolate`).
    weight : float
        λ (``TrainConfig.gradient_penalty``).
    global_batch : int
        The batch size the mean is over (see the module docstring).
    """
    g = ops.cast(grads, "float32")
    norm = ops.sqrt(ops.sum(ops.square(g), axis=(1, 2, 3)) + 1e-12)
    return weight * batch_average(ops.square(norm - 1.0), global_batch)


def generator_loss(fake_scores, clean, fake, train_cfg, global_batch, noisy=None):
    """``(loss, adversarial, content)`` of the generator.

    Parameters
    ----------
    fake_scores : tensor
        Critic outputs on the generated images.
    clean, fake : tensor
        Targets and generator outputs, both on [-1, 1].
    train_cfg : TrainConfig
        ``gray_lambda``, ``gray_scale``, ``gray_reduction`` and ``loss_weighting`` are used.
    global_batch : int
    noisy : tensor, optional
        The generator's input on [-1, 1] (needed for ``loss_weighting``).
    """
    adversarial = batch_average(-per_example_score(fake_scores), global_batch)
    content = batch_average(_content(clean, fake, noisy, train_cfg), global_batch)
    return adversarial + train_cfg.gray_lambda * content, adversarial, content


def _content(clean, fake, noisy, train_cfg):
    if train_cfg.loss_weighting != "none" and noisy is None:
        raise ValueError("loss weighting needs the noisy input")
    if noisy is None:
        return gray_constraint(clean, fake, train_cfg.gray_scale, train_cfg.gray_reduction)
    return weighted_content(clean, fake, noisy, train_cfg)


def content_loss(clean, fake, train_cfg, global_batch, noisy=None):
    """``(loss, adversarial, content)`` of a generator trained without a critic.

    The loss is the gray constraint alone (for ``gray_reduction='mean'`` the mean squared
    error, the Noise2Noise loss); the adversarial term is zero.
    """
    content = batch_average(_content(clean, fake, noisy, train_cfg), global_batch)
    return content, ops.zeros_like(content), content

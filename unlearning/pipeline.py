"""``ClassConditionalDDPMPipeline``: DDIM sampling with classifier-free guidance.

diffusers' ``DDPMPipeline`` passes no ``class_labels``, and a class-conditional
``UNet2DModel`` raises without them, hence our own pipeline. It keeps the training
``DDPMScheduler`` (its alphas_cumprod) and runs the DDIM update itself so that it can
clip x0 to [-1, 1] and re-derive epsilon from the clipped x0 before each update (without
that re-derivation the pilot's samples were unreadable; dimum.md section 9.2).

This file is self-contained on purpose (torch and diffusers only, no ``unlearning``
import): ``save_pretrained`` copies it into the saved folder as ``pipeline.py`` and names
it in ``model_index.json``, diffusers' custom-pipeline convention, so that plain
``DiffusionPipeline.from_pretrained(dir, trust_remote_code=True)`` rebuilds this class
from the folder alone, offline.
"""

from __future__ import annotations

import inspect
import json
import numbers
import os
import shutil

import torch
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput
from torch import nn

#: ``model_index.json`` ``_class_name`` in diffusers' list form [module file, class]:
#: ``DiffusionPipeline.from_pretrained`` then loads the class from ``pipeline.py``.
PIPELINE_FILE = "pipeline.py"


#: Attribute a ``class_embed_type="timestep"`` UNet carries in memory once a pipeline
#: has accepted it: its class count K (``UNet2DModel``'s config has no field for it, so
#: the saved folder keeps K as the pipeline's ``num_classes`` in ``model_index.json``).
#: It lets code that holds only the model (training loops, deep copies) find K.
NUM_CLASSES_ATTR = "_num_classes"

#: The label encodings we can drive: a class table, or integer labels fed through the
#: sinusoidal timestep projection.
SUPPORTED_EMBED_TYPES = (None, "timestep")


def _check_k(num_classes, why: str) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ValueError(
            f"num_classes: got {num_classes!r}, expected an integer >= 2 ({why})"
        )
    if int(num_classes) < 2:
        raise ValueError(
            f"num_classes: got {num_classes}, expected an integer >= 2 ({why})"
        )
    return int(num_classes)


def class_count(unet: nn.Module, num_classes: int | None = None) -> int:
    """The number of real classes K of a class-conditional ``unet``; raise if none.

    Accepted: a diffusers ``UNet2DModel`` (or our ``ClassConditionalMLP``) with

    * ``class_embed_type=None`` and a class table of ``num_class_embeds = K + 1`` rows:
      rows 0..K-1 are the classes, row K the classifier-free-guidance null label. K is
      read from the table; a ``num_classes`` given must agree with it.
    * ``class_embed_type="timestep"``: integer labels go through the sinusoidal
      timestep projection and an MLP, so the config holds no class count and K must be
      given (``num_classes``, or the count a pipeline attached before, see
      :data:`NUM_CLASSES_ATTR`). Labels 0..K-1 are the classes and label K is the
      null label: the projection takes any integer, so K is one more point of the
      same embedding, learnt by label dropout like the table's null row.

    Raises:
        TypeError: ``unet`` has no diffusers ``config``.
        ValueError: an unconditional model (``num_class_embeds`` None), an
            unsupported ``class_embed_type`` (``"identity"``: continuous class
            vectors), fewer than 2 classes, a missing or non-integer K for a
            timestep-embedded UNet, or a K that disagrees with the class table.
    """
    cfg = getattr(unet, "config", None)
    if cfg is None:
        raise TypeError(
            f"unet: got {type(unet).__name__}, expected a diffusers model with a "
            "config (e.g. UNet2DModel)"
        )
    embed_type = cfg.get("class_embed_type")
    n = cfg.get("num_class_embeds")
    if embed_type == "identity":
        raise ValueError(
            "unet: class_embed_type='identity' is not supported: it takes "
            "class_labels as continuous embedding vectors (one of size "
            "time_embed_dim per image), not integer classes, so there is no class "
            "to forget and no null label; expected class_embed_type=None with "
            "num_class_embeds = K + 1, or 'timestep' (integer labels) with "
            "num_classes=K"
        )
    if embed_type not in SUPPORTED_EMBED_TYPES:
        raise ValueError(
            f"unet: class_embed_type={embed_type!r} is not supported, expected None "
            "(a table of num_class_embeds = K + 1 rows: K classes plus the "
            "classifier-free-guidance null label at index K) or 'timestep' (integer "
            "labels through the timestep projection, K given as num_classes)"
        )
    if embed_type == "timestep":
        attached = getattr(unet, NUM_CLASSES_ATTR, None)
        if num_classes is None:
            num_classes = attached
        if num_classes is None:
            raise ValueError(
                "num_classes: got None for a class_embed_type='timestep' UNet, "
                "expected the number of classes K (an integer >= 2): its labels go "
                "through the sinusoidal timestep projection, so its config holds no "
                "class count (pass num_classes=K, CLI --num-classes K; labels "
                "0..K-1 are the classes, K the classifier-free-guidance null label)"
            )
        k = _check_k(num_classes, "the classes of the class_embed_type='timestep' UNet")
        if attached is not None and int(attached) != k:
            raise ValueError(
                f"num_classes: got {k}, but this class_embed_type='timestep' UNet "
                f"was set up with {int(attached)} classes, expected the same K"
            )
        return k
    if n is None:
        raise ValueError(
            f"unet: {type(unet).__name__} is unconditional (num_class_embeds=None); "
            "class unlearning needs a class-conditional model with num_class_embeds = "
            "K + 1 (K classes plus the classifier-free-guidance null label at index "
            "K), or class_embed_type='timestep' with num_classes=K"
        )
    if int(n) < 3:
        raise ValueError(
            f"unet: num_class_embeds={n} gives {int(n) - 1} class(es) plus the null "
            "label, expected at least 2 classes (num_class_embeds >= 3)"
        )
    if num_classes is not None:
        k = _check_k(num_classes, f"num_class_embeds={n} minus the null label")
        if k != int(n) - 1:
            raise ValueError(
                f"num_classes: got {k}, but the UNet's num_class_embeds={n} gives "
                f"{int(n) - 1} classes plus the null label, expected {int(n) - 1} "
                "(or leave num_classes unset)"
            )
    return int(n) - 1


def check_class_conditional(unet: nn.Module, num_classes: int | None = None) -> None:
    """Raise unless ``unet`` is a class-conditional model this pipeline can drive.

    See :func:`class_count` (which also returns K) for what is accepted and why.
    """
    class_count(unet, num_classes)


def image_shape_of(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the model expects (``sample_size`` an int or an (H, W) pair)."""
    c = model.config
    s = c.sample_size
    h, w = (s, s) if isinstance(s, int) else (s[0], s[1])
    return (int(c.in_channels), int(h), int(w))


def guided_noise(
    model: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor,
    null_label: int,
    w: float,
) -> torch.Tensor:
    """CFG noise (1 + w) eps(x_t | c) - w eps(x_t | null), one batched forward pass.

    Args:
        model: noise predictor called as ``model(x, t, class_labels=...).sample``.
        x_t: (B, C, H, W) noisy images.
        t: (B,) integer timesteps.
        labels: (B,) class labels.
        null_label: index of the unconditional embedding.
        w: guidance weight (the baselines' convention; w=2 equals s=3 in eps_null +
            s (eps_c - eps_null)).
    """
    if w == 0:
        return model(x_t, t, class_labels=labels).sample
    null = torch.full_like(labels, null_label)
    eps = model(
        torch.cat([x_t, x_t]), torch.cat([t, t]), class_labels=torch.cat([labels, null])
    ).sample
    eps_c, eps_null = eps.chunk(2)
    return (1.0 + w) * eps_c - w * eps_null


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_t: torch.Tensor,
    alpha_prev: torch.Tensor,
    eta: float,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One DDIM update x_t -> x_{t_prev} (Song et al. 2021, eq. 12), with x0 clipping.

    ``alpha_*`` are cumulative products (alpha-bar). x0 is clipped to [-1, 1] and eps is
    re-derived from the clipped x0 so that the direction term agrees with it.
    """
    x0 = (x_t - (1 - alpha_t).sqrt() * eps) / alpha_t.sqrt()
    x0 = x0.clamp(-1.0, 1.0)
    eps = (x_t - alpha_t.sqrt() * x0) / (1 - alpha_t).sqrt()
    sigma = eta * ((1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)).sqrt()
    x_prev = (
        alpha_prev.sqrt() * x0 + (1 - alpha_prev - sigma**2).clamp(min=0).sqrt() * eps
    )
    if eta > 0:
        assert noise is not None
        x_prev = x_prev + sigma * noise
    return x_prev


class ClassConditionalDDPMPipeline(DiffusionPipeline):
    """Sample a class-conditional DDPM with DDIM + CFG.

    Components: ``unet`` (a class-conditional ``UNet2DModel`` with
    ``num_class_embeds = K + 1`` or with ``class_embed_type="timestep"``, or our
    ``ClassConditionalMLP``; see :func:`class_count`) and ``scheduler`` (the training
    ``DDPMScheduler``). ``num_classes`` (K) is required for a timestep-embedded UNet,
    whose config has no class count, and optional otherwise (it must then match the
    table). It is kept in the pipeline config, so ``model_index.json`` stores it and
    ``from_pretrained`` passes it back.
    """

    model_cpu_offload_seq = "unet"

    def __init__(
        self, unet: nn.Module, scheduler: DDPMScheduler, num_classes: int | None = None
    ) -> None:
        super().__init__()
        k = class_count(unet, num_classes)
        if unet.config.get("class_embed_type") == "timestep":
            # the model alone does not know K; training loops and copies read this
            setattr(unet, NUM_CLASSES_ATTR, k)
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(num_classes=k)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """``DiffusionPipeline.save_pretrained``, plus the code to load it back.

        Copies this file to ``pipeline.py`` and names it in ``model_index.json``; a
        ``unet`` whose class is not diffusers' own (``ClassConditionalMLP``) gets its
        source file copied into ``unet/`` the same way. Plain diffusers then loads the
        folder with ``DiffusionPipeline.from_pretrained(dir, trust_remote_code=True)``.
        """
        super().save_pretrained(save_directory, **kwargs)
        here = inspect.getsourcefile(type(self))
        shutil.copyfile(here, os.path.join(save_directory, PIPELINE_FILE))
        index_path = os.path.join(save_directory, "model_index.json")
        with open(index_path, encoding="utf-8") as fh:
            index = json.load(fh)
        index["_class_name"] = [PIPELINE_FILE[:-3], type(self).__name__]
        unet_cls = type(self.unet)
        if unet_cls.__module__.split(".")[0] != "diffusers":
            src = inspect.getsourcefile(unet_cls)
            stem = os.path.splitext(os.path.basename(src))[0]
            shutil.copyfile(src, os.path.join(save_directory, "unet", stem + ".py"))
            index["unet"] = [stem, unet_cls.__name__]
        with open(index_path, "w", encoding="utf-8") as fh:
            json.dump(index, fh, indent=2, sort_keys=True)
            fh.write("\n")

    @property
    def num_classes(self) -> int:
        """Number of real classes K (label K is the null label)."""
        return class_count(self.unet)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of generated images."""
        return image_shape_of(self.unet)

    def ddim_timesteps(self, num_inference_steps: int) -> list[int]:
        """Evenly spaced timesteps from high to low ("leading" spacing, as DDIM)."""
        T = self.scheduler.config.num_train_timesteps
        if not 1 <= num_inference_steps <= T:
            raise ValueError(
                f"num_inference_steps: got {num_inference_steps}, expected 1..{T}"
            )
        step = T // num_inference_steps
        return list(range(0, T, step))[:num_inference_steps][::-1]

    @torch.no_grad()
    def __call__(
        self,
        class_labels: torch.Tensor | list[int],
        generator: torch.Generator | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 2.0,
        eta: float = 0.0,
        batch_size: int = 512,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Generate one image per entry of ``class_labels``.

        Args:
            class_labels: (N,) class indices in [0, K).
            generator: draws the initial noise (and the DDIM noise when eta > 0), so the
                same generator state gives the same images.
            num_inference_steps: DDIM steps.
            guidance_scale: CFG weight w in (1 + w) eps_c - w eps_null.
            eta: 0 for deterministic DDIM, 1 for DDPM-like stochastic steps.
            batch_size: images per forward pass (memory bound).
            output_type: "pt" (tensor in [-1, 1]), "np" (NHWC in [0, 1]) or "pil".
            return_dict: return ``ImagePipelineOutput`` rather than a tuple.
        """
        device = self._execution_device
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
        K = self.num_classes
        if labels.numel() and (labels.min() < 0 or labels.max() >= K):
            raise ValueError(
                f"class_labels: got values in "
                f"[{int(labels.min())}, {int(labels.max())}],"
                f" expected [0, {K - 1}]"
            )
        gen_device = generator.device if generator is not None else torch.device("cpu")
        # All noise is drawn up front, in one order, so batching does not change it.
        shape = (labels.numel(), *self.image_shape)
        x = torch.randn(shape, generator=generator, device=gen_device).to(device)
        timesteps = self.ddim_timesteps(num_inference_steps)
        step_noise = None
        if eta > 0:
            step_noise = torch.randn(
                (len(timesteps), *shape), generator=generator, device=gen_device
            ).to(device)
        alphas = self.scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
        labels = labels.to(device)
        self.unet.eval()
        out = []
        for lo in range(0, labels.numel(), batch_size):
            xb, yb = x[lo : lo + batch_size], labels[lo : lo + batch_size]
            for i, t in enumerate(self.progress_bar(timesteps)):
                # 1. predict the guided noise
                tb = torch.full_like(yb, t)
                eps = guided_noise(self.unet, xb, tb, yb, K, guidance_scale)
                # 2. DDIM update to the previous timestep (alpha-bar 1 after the last)
                t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
                a_prev = (
                    alphas[t_prev] if t_prev >= 0 else torch.ones((), device=device)
                )
                nz = (
                    step_noise[i, lo : lo + batch_size]
                    if step_noise is not None
                    else None
                )
                xb = ddim_step(xb, eps.float(), alphas[t], a_prev, eta, nz)
            out.append(xb.clamp(-1.0, 1.0))
        images = torch.cat(out) if out else x
        if output_type in ("np", "pil"):
            arr = ((images + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
            images = self.numpy_to_pil(arr) if output_type == "pil" else arr
        elif output_type != "pt":
            raise ValueError(
                f"output_type: got {output_type!r}, expected pt, np or pil"
            )
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

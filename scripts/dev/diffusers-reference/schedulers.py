#!/usr/bin/python3
"""Reference numbers for models/diffusion's schedulers, from diffusers' formulas.

diffusers (and PyPI) cannot be installed on this project's machines, so this
script transcribes the formulas of diffusers' EulerDiscreteScheduler,
EulerAncestralDiscreteScheduler and StableDiffusionImg2ImgPipeline into
numpy, keeping torch's float32 arithmetic where diffusers computes in float32,
and writes the results as a JSON fixture that the Go tests compare against:

    /usr/bin/python3 scripts/dev/diffusers-reference/schedulers.py \
        > models/diffusion/testdata/schedulers.json

Source transcribed: huggingface/diffusers v0.27 (the files are identical in
commit 343a67e43ab94ed53411dc176b2bfeced26d76a8 of the a-r-r-o-w/diffusers
fork, which is what was read here):

  src/diffusers/schedulers/scheduling_euler_discrete.py
  src/diffusers/schedulers/scheduling_euler_ancestral_discrete.py
  src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py

Each function below quotes the lines it transcribes. Nothing here imports
imgserve code: the numbers are independent of the Go implementation.
Output is deterministic (no randomness; inputs are closed-form sequences).
"""

import json
import sys

import numpy as np

F32 = np.float32


def torch_linspace_f32(start, end, steps):
    """torch.linspace(start, end, steps, dtype=torch.float32) on CPU.

    ATen's linspace kernel computes step = (end - start) / (steps - 1) in the
    tensor's scalar type and fills the first half as start + step*i and the
    second half as end - step*(steps - 1 - i), all in float32. (Its
    vectorised path forms runs of 8 as base + k*step instead, which can
    differ by one float32 ulp: the Go tests allow for that.)
    """
    s, e = F32(start), F32(end)
    step = (e - s) / F32(steps - 1)
    half = steps // 2
    out = np.empty(steps, F32)
    for i in range(steps):
        if i < half:
            out[i] = s + step * F32(i)
        else:
            out[i] = e - step * F32(steps - 1 - i)
    return out


def alphas_cumprod(cfg):
    """EulerDiscreteScheduler.__init__ (same in EulerAncestralDiscreteScheduler):

    elif beta_schedule == "linear":
        self.betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        self.betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    self.alphas = 1.0 - self.betas
    self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
    """
    n = cfg["num_train_timesteps"]
    if cfg["beta_schedule"] == "linear":
        betas = torch_linspace_f32(cfg["beta_start"], cfg["beta_end"], n)
    elif cfg["beta_schedule"] == "scaled_linear":
        betas = torch_linspace_f32(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n) ** 2
    else:
        raise ValueError(cfg["beta_schedule"])
    alphas = F32(1.0) - betas
    # ATen's CPU cumprod accumulates in at::acc_type<float, false>, i.e.
    # double, and stores each running product as float32.
    return np.cumprod(alphas.astype(np.float64)).astype(F32)


def train_sigmas(acp):
    """set_timesteps:
    sigmas = np.array(((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5)
    (computed by torch in float32, then viewed as a numpy array)
    """
    return ((F32(1) - acp) / acp) ** F32(0.5)


def set_timesteps(cfg, steps):
    """EulerDiscreteScheduler.set_timesteps (EulerAncestral's is the same
    without the interpolation_type switch):

    if self.config.timestep_spacing == "linspace":
        timesteps = np.linspace(0, self.config.num_train_timesteps - 1, num_inference_steps, dtype=np.float32)[::-1].copy()
    elif self.config.timestep_spacing == "leading":
        step_ratio = self.config.num_train_timesteps // self.num_inference_steps
        timesteps = (np.arange(0, num_inference_steps) * step_ratio).round()[::-1].copy().astype(np.float32)
        timesteps += self.config.steps_offset
    elif self.config.timestep_spacing == "trailing":
        step_ratio = self.config.num_train_timesteps / self.num_inference_steps
        timesteps = (np.arange(self.config.num_train_timesteps, 0, -step_ratio)).round().copy().astype(np.float32)
        timesteps -= 1
    sigmas = np.array(((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5)
    sigmas = np.interp(timesteps, np.arange(0, len(sigmas)), sigmas)        # interpolation_type "linear"
    sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32, device=device)
    self.sigmas = torch.cat([sigmas, torch.zeros(1, device=sigmas.device)])
    """
    n = cfg["num_train_timesteps"]
    spacing = cfg["timestep_spacing"]
    if spacing == "linspace":
        ts = np.linspace(0, n - 1, steps, dtype=np.float32)[::-1].copy()
    elif spacing == "leading":
        ratio = n // steps
        ts = (np.arange(0, steps) * ratio).round()[::-1].copy().astype(np.float32)
        ts += cfg["steps_offset"]
    elif spacing == "trailing":
        ratio = n / steps
        ts = (np.arange(n, 0, -ratio)).round().copy().astype(np.float32)
        ts -= 1
    else:
        raise ValueError(spacing)
    sig = train_sigmas(alphas_cumprod(cfg))
    sig = np.interp(ts, np.arange(0, len(sig)), sig).astype(F32)
    sig = np.concatenate([sig, np.zeros(1, F32)])
    return ts, sig


def init_noise_sigma(cfg, sigmas):
    """@property init_noise_sigma:
    max_sigma = self.sigmas.max()
    if self.config.timestep_spacing in ["linspace", "trailing"]:
        return max_sigma
    return (max_sigma**2 + 1) ** 0.5
    """
    m = sigmas.max()
    if cfg["timestep_spacing"] in ("linspace", "trailing"):
        return m
    return (m * m + F32(1)) ** F32(0.5)


def scale_model_input(sample, sigma):
    """scale_model_input:
    sigma = self.sigmas[self.step_index]
    sample = sample / ((sigma**2 + 1) ** 0.5)
    """
    return sample / ((sigma ** F32(2) + F32(1)) ** F32(0.5))


def pred_original(cfg, model_output, sample, sigma):
    """step, 1. (Euler with gamma = 0, so sigma_hat = sigma):
    elif self.config.prediction_type == "epsilon":
        pred_original_sample = sample - sigma_hat * model_output
    elif self.config.prediction_type == "v_prediction":
        pred_original_sample = model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))
    """
    if cfg["prediction_type"] == "epsilon":
        return sample - sigma * model_output
    if cfg["prediction_type"] == "v_prediction":
        return model_output * (-sigma / (sigma ** F32(2) + F32(1)) ** F32(0.5)) + (sample / (sigma ** F32(2) + F32(1)))
    raise ValueError(cfg["prediction_type"])


def euler_step(cfg, model_output, sample, sigmas, i):
    """EulerDiscreteScheduler.step with the defaults s_churn=0 (so gamma = 0):
    sigma = self.sigmas[self.step_index]
    gamma = min(s_churn / (len(self.sigmas) - 1), 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
    sigma_hat = sigma * (gamma + 1)
    (pred_original_sample as above)
    derivative = (sample - pred_original_sample) / sigma_hat
    dt = self.sigmas[self.step_index + 1] - sigma_hat
    prev_sample = sample + derivative * dt
    """
    sigma = sigmas[i]
    x0 = pred_original(cfg, model_output, sample, sigma)
    derivative = (sample - x0) / sigma
    dt = sigmas[i + 1] - sigma
    return sample + derivative * dt


def ancestral_step(cfg, model_output, sample, sigmas, i, noise):
    """EulerAncestralDiscreteScheduler.step:
    sigma = self.sigmas[self.step_index]
    (pred_original_sample with sigma)
    sigma_from = self.sigmas[self.step_index]
    sigma_to = self.sigmas[self.step_index + 1]
    sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    derivative = (sample - pred_original_sample) / sigma
    dt = sigma_down - sigma
    prev_sample = sample + derivative * dt
    noise = randn_tensor(model_output.shape, ...)
    prev_sample = prev_sample + noise * sigma_up
    (the noise is an input here: torch's generator is not reproduced)
    """
    sigma = sigmas[i]
    x0 = pred_original(cfg, model_output, sample, sigma)
    s_from, s_to = sigmas[i], sigmas[i + 1]
    s_up = (s_to ** F32(2) * (s_from ** F32(2) - s_to ** F32(2)) / s_from ** F32(2)) ** F32(0.5)
    s_down = (s_to ** F32(2) - s_up ** F32(2)) ** F32(0.5)
    derivative = (sample - x0) / sigma
    dt = s_down - sigma
    prev = sample + derivative * dt
    return prev + noise * s_up, s_up, s_down


def img2img_timesteps(steps, strength, timesteps):
    """StableDiffusionImg2ImgPipeline.get_timesteps (scheduler.order == 1):
    init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
    t_start = max(num_inference_steps - init_timestep, 0)
    timesteps = self.scheduler.timesteps[t_start * self.scheduler.order :]
    self.scheduler.set_begin_index(t_start * self.scheduler.order)

    and add_noise with begin_index set:
    step_indices = [self.begin_index] * timesteps.shape[0]
    sigma = sigmas[step_indices].flatten()
    noisy_samples = original_samples + noise * sigma
    """
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    return t_start, timesteps[t_start:]


def seq(n, a, b, scale):
    """Closed-form test inputs, stored in the fixture as computed."""
    return (np.sin(np.arange(n, dtype=np.float64) * a + b) * scale).astype(F32)


SD_TURBO = {
    # stabilityai/sd-turbo scheduler/scheduler_config.json (EulerDiscreteScheduler)
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}
SD15_LINSPACE = dict(SD_TURBO, timestep_spacing="linspace")  # SD 1.5's PNDM config has no spacing: Euler's default
SD15_LEADING = dict(SD_TURBO, timestep_spacing="leading")
V_PRED = dict(SD_TURBO, prediction_type="v_prediction")  # SD 2.1 (768) predicts v
LINEAR = dict(SD_TURBO, beta_schedule="linear", beta_start=0.0001, beta_end=0.02)


def lst(a):
    return [float(x) for x in np.asarray(a, dtype=np.float64).reshape(-1)]


def run_loop(cfg, steps, ancestral, n=16, start=0):
    ts, sig = set_timesteps(cfg, steps)
    x = seq(n, 0.37, 0.11, 1.0) * init_noise_sigma(cfg, sig)
    first = x.copy()
    trace = []
    for i in range(start, steps):
        scaled = scale_model_input(x, sig[i])
        eps = seq(n, 0.53 + 0.07 * i, 0.3 * i, 0.9)
        if ancestral:
            noise = seq(n, 0.29 + 0.05 * i, 1.7 + i, 1.1)
            nxt, s_up, s_down = ancestral_step(cfg, eps, x, sig, i, noise)
            trace.append(
                {"scaled": lst(scaled), "model_output": lst(eps), "noise": lst(noise), "prev_sample": lst(nxt),
                 "sigma_up": float(s_up), "sigma_down": float(s_down)}
            )
        else:
            nxt = euler_step(cfg, eps, x, sig, i)
            trace.append({"scaled": lst(scaled), "model_output": lst(eps), "prev_sample": lst(nxt)})
        x = nxt
    return {
        "timesteps": lst(ts),
        "sigmas": lst(sig),
        "init_noise_sigma": float(init_noise_sigma(cfg, sig)),
        "initial_sample": lst(first),
        "steps": trace,
    }


def main():
    cases = []
    for name, cfg, steps, anc in (
        ("sd-turbo euler 1", SD_TURBO, 1, False),
        ("sd-turbo euler 2", SD_TURBO, 2, False),
        ("sd-turbo euler 3", SD_TURBO, 3, False),
        ("sd-turbo euler 4", SD_TURBO, 4, False),
        ("v-prediction euler 4", V_PRED, 4, False),
        ("linear-betas euler 4", LINEAR, 4, False),
        ("sd15 linspace euler-ancestral 20", SD15_LINSPACE, 20, True),
        ("sd15 leading euler-ancestral 20", SD15_LEADING, 20, True),
        ("sd-turbo euler-ancestral 4", SD_TURBO, 4, True),
    ):
        c = {"name": name, "config": cfg, "num_inference_steps": steps, "ancestral": anc}
        c.update(run_loop(cfg, steps, anc))
        cases.append(c)

    img2img = []
    for steps, strength in ((2, 0.5), (4, 0.5), (4, 0.75), (1, 1.0), (4, 0.3), (20, 0.5)):
        cfg = SD_TURBO if steps <= 4 else SD15_LINSPACE
        ts, sig = set_timesteps(cfg, steps)
        t_start, rest = img2img_timesteps(steps, strength, ts)
        latents = seq(8, 0.41, 0.2, 0.8)
        noise = seq(8, 0.61, 0.9, 1.0)
        entry = {"num_inference_steps": steps, "strength": strength, "config": cfg, "t_start": t_start,
                 "timesteps": lst(rest)}
        if len(rest):
            entry["noise_sigma"] = float(sig[t_start])
            entry["init_latents"] = lst(latents)
            entry["noise"] = lst(noise)
            entry["noisy_latents"] = lst(latents + noise * sig[t_start])
        img2img.append(entry)

    sd_turbo_train = train_sigmas(alphas_cumprod(SD_TURBO))
    out = {
        "source": "scripts/dev/diffusers-reference/schedulers.py (diffusers v0.27 formulas)",
        "training_sigmas_sd": {"first": float(sd_turbo_train[0]), "t999": float(sd_turbo_train[999]),
                               "t500": float(sd_turbo_train[500])},
        "cases": cases,
        "img2img": img2img,
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

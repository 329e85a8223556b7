"""The tiny base on scripted ALOHA transfer-cube demonstrations: held-out L1 and sim success.

Records `--episodes` demonstrations with the built-in scripted policy (as `vla-data generate
--env aloha-transfer-cube`; every one succeeds), converts them as `make eval-demo` does (the
simulator's `top` view as the run's `head` camera, one instruction, `--val-episodes` held
out), and trains the tiny base with vla-train's defaults, saving at each of `--steps`. At
each budget it reports the CPU time spent to reach it, the held-out L1 over the best
constant's, the same for a no-image control (the same episodes, every frame replaced by one
frame, the same in every episode, trained alike: the robot state and the instruction are all
it has), and
the closed-loop success of `vla-train eval` on placements the demonstrations never showed.
It also reports the L1 on the held-out episodes' first samples, where every episode starts
from the same pose and only the image shows the cube's place: the policy's, the control's,
and that of the training demonstrations' median first chunk, what a policy blind to the
cube's place predicts there. Recording is the slow part, so the episodes already in
WORK/episodes are used again.
"""

from __future__ import annotations

import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import click
import h5py
import numpy as np

from sim.demos import record_demos
from sim.evaluate import EvalConfig
from tests.episode_fixtures import run_convert
from tests.learning_fixtures import (
    BATCH,
    SEED,
    best_constant_l1,
    predict_split,
    train_tiny,
)
from trainer.inference.predict import Comparison, PredictReport
from trainer.inference.sim_eval import SimEvalConfig, evaluate_in_sim
from trainer.run.train_config import TrainConfig

ENV = "aloha-transfer-cube"
CAMERAS = ("top:head",)  # as make eval-demo: the top view is the run's head camera
FRAMES = ("observations/images/top",)  # the ALOHA layout's top camera: what the control blanks
INSTRUCTION = "transfer the cube"
EVAL_SEED = 1000  # episode i resets with 1000 + i: placements no demonstration (0..N-1) had
EVAL_MAX_STEPS = 300  # gym-aloha's own limit; the script succeeds by step 249


@dataclass
class SimLearningConfig:
    """What the bench records, trains and evaluates."""

    work: Path
    """Holds episodes/ (kept between runs), the shard sets, the runs and the evaluations."""
    episodes: int = 20
    val_episodes: int = 3
    budgets: tuple[int, ...] = (500, 1500, 4000)
    """Training steps (batch 8) at which the run is measured, increasing."""
    eval_episodes: int = 3
    control_steps: int | None = None
    """The no-image control is trained through the budgets up to this; None: all of them."""
    seed: int = SEED
    demo_steps: int = 400
    """At most this many steps per demonstration (each ends at success, by step 249)."""
    eval_max_steps: int = EVAL_MAX_STEPS

    def __post_init__(self) -> None:
        self.work = Path(self.work)
        self.budgets = tuple(self.budgets)
        if not self.budgets or list(self.budgets) != sorted(set(self.budgets)):
            raise click.BadParameter("--steps: give increasing step counts, e.g. 500,1500")
        if self.budgets[0] < 1:
            raise click.BadParameter("--steps: every budget must be at least 1 step")
        if not 1 <= self.val_episodes < self.episodes:
            raise click.BadParameter("--val-episodes: at least 1, and fewer than --episodes")
        if self.eval_episodes < 0:
            raise click.BadParameter("--eval-episodes must not be negative")
        if self.control_steps is not None and self.control_steps < self.budgets[0]:
            raise click.BadParameter("--control-steps: at least the first of --steps")

    @property
    def control_budgets(self) -> tuple[int, ...]:
        limit = self.budgets[-1] if self.control_steps is None else self.control_steps
        return tuple(b for b in self.budgets if b <= limit)


@dataclass
class Row:
    """One budget's figures."""

    steps: int
    cpu_s: float
    held: float  # held-out L1 (normalized) over the best constant's
    held_units: float  # held-out L1 in action units (radians for the joints)
    train: float  # train episodes' L1, evaluation view, over the best constant's
    control: float | None  # the no-image control's held-out L1 over the best constant's
    # Held-out episodes' first samples, action units: the policy, the control, and the
    # training demonstrations' median first chunk (see first_frame_l1).
    first: float
    first_control: float | None
    first_median: float
    successes: int
    episodes: int
    max_reward: float  # mean over episodes of each one's best reward (4: success)
    eval_ep_s: float


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the loader's workers)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def demonstrations(cfg: SimLearningConfig) -> Path:
    """WORK/episodes: recorded now, or the episodes an earlier run of the bench recorded."""
    folder = cfg.work / "episodes"
    wanted = {f"episode_{i}.hdf5" for i in range(cfg.episodes)}
    held = {p.name for p in folder.glob("*.hdf5")} if folder.exists() else set()
    if held != wanted:
        if held:
            raise click.UsageError(f"{folder} holds other episodes than {cfg.episodes}; "
                                   "remove it or choose another WORK")  # fmt: skip
        record_demos(ENV, folder, cfg.episodes, max_steps=cfg.demo_steps)
    return folder


def blank_copy(episodes: Path, out: Path) -> Path:
    """The episodes with every top frame replaced by one frame, the same in all of them (the
    first episode's first). Each episode's own first frame would not do: it shows where that
    episode's cube lies, the very thing the control must not see."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(episodes, out)
    paths = sorted(out.glob("*.hdf5"))
    with h5py.File(paths[0], "r") as f:
        frames = {name: f[name][0] for name in FRAMES}
    for path in paths:
        with h5py.File(path, "r+") as f:
            for name, frame in frames.items():
                f[name][...] = frame
    return out


def shard_set(episodes: Path, out: Path, val_episodes: int) -> Path:
    """`vla-data convert EPISODES OUT --cameras top:head --instruction ...` at 224 px."""
    run_convert(episodes, out, cameras=CAMERAS, instruction=INSTRUCTION,
                val_episodes=val_episodes, image_size=224, chunk=None, overwrite=True)  # fmt: skip
    return out


def train_budgets(shards: Path, run_dir: Path, budgets: tuple[int, ...], seed: int) -> list[float]:
    """The run trained to each budget in turn; the CPU seconds spent to reach each.

    The learning rate is constant until vla-train's --decay-step (40000), and a resume goes on
    exactly where the run stopped, so the run at each budget is the one a run trained to that
    budget alone would be.
    """
    shutil.rmtree(run_dir, ignore_errors=True)
    spent, cpu = 0.0, []
    for i, steps in enumerate(budgets):
        start = cpu_seconds()
        # The budgets are points along one run, so its schedule is vla-train's default (no
        # decay within them), not the learning check's decay at its step 300.
        train_tiny(shards, run_dir, steps=steps, seed=seed, resume=i > 0, keep=len(budgets),
                   save_every=budgets[-1], decay_step=TrainConfig.decay_step)  # fmt: skip
        spent += cpu_seconds() - start
        cpu.append(spent)
        print(f"trained {run_dir.name} to step {steps}: {spent:.0f} CPU s", flush=True)
    return cpu


def closed_loop(ckpt: Path, out: Path, cfg: SimLearningConfig) -> dict:
    """`vla-train eval CKPT --env aloha-transfer-cube --cameras top:head`; eval_info back."""
    shutil.rmtree(out, ignore_errors=True)
    run = EvalConfig(ENV, out, episodes=cfg.eval_episodes, seed=EVAL_SEED,
                     max_steps=cfg.eval_max_steps, videos=0)  # fmt: skip
    return evaluate_in_sim(SimEvalConfig(run, ckpt=ckpt, cameras=CAMERAS))


def first_chunks(report: PredictReport) -> list[Comparison]:
    """The rows of each episode's first sample (keys end in the step index, `_000000`)."""
    return [r for r in report.rows if int(r.key.rsplit("_", 1)[1]) == 0]


def first_frame_l1(held: PredictReport, train: PredictReport) -> tuple[float, float]:
    """L1 in action units on the held-out episodes' first samples, of the policy and of the
    training demonstrations' median first chunk.

    Every episode starts from the same pose and only the cube's place differs, which only the
    image shows: the median first chunk (per row and dimension) is what a policy blind to it
    predicts there, so a policy that reads the cube's place comes in under it.
    """
    median = np.median(np.stack([r.true for r in first_chunks(train)]), axis=0)
    rows = first_chunks(held)
    policy = np.mean([np.abs(r.predicted - r.true)[: r.valid].mean() for r in rows])
    blind = np.mean([np.abs(median - r.true)[: r.valid].mean() for r in rows])
    return float(policy), float(blind)


def measure(cfg: SimLearningConfig) -> list[Row]:
    """Record (or reuse), convert, train both sets at every budget, then evaluate each."""
    episodes = demonstrations(cfg)
    shards = shard_set(episodes, cfg.work / "shards", cfg.val_episodes)
    blank = blank_copy(episodes, cfg.work / "episodes-blank")
    control_shards = shard_set(blank, cfg.work / "shards-blank", cfg.val_episodes)
    cpu = train_budgets(shards, cfg.work / "run", cfg.budgets, cfg.seed)
    train_budgets(control_shards, cfg.work / "run-blank", cfg.control_budgets, cfg.seed)
    control_constant = best_constant_l1(control_shards, "val")
    constant = {split: best_constant_l1(shards, split) for split in ("train", "val")}
    rows = []
    for steps, cpu_s in zip(cfg.budgets, cpu, strict=True):
        ckpt = cfg.work / "run" / f"step-{steps}"
        held = predict_split(shards, ckpt, "val")
        train = predict_split(shards, ckpt, "train")
        first, first_median = first_frame_l1(held, train)
        control = first_control = None
        if steps in cfg.control_budgets:
            blind = predict_split(control_shards, cfg.work / "run-blank" / f"step-{steps}", "val")
            control = blind.l1_normalized / control_constant
            first_control = first_frame_l1(blind, train)[0]
        info = {"per_episode": [], "aggregated": {"avg_max_reward": 0.0, "eval_ep_s": 0.0}}
        if cfg.eval_episodes:
            info = closed_loop(ckpt, cfg.work / f"eval-{steps}", cfg)
        rows.append(Row(
            steps=steps, cpu_s=cpu_s, held=held.l1_normalized / constant["val"],
            held_units=held.l1, train=train.l1_normalized / constant["train"],
            control=control, first=first, first_control=first_control,
            first_median=first_median,
            successes=sum(e["success"] for e in info["per_episode"]),
            episodes=cfg.eval_episodes, max_reward=info["aggregated"]["avg_max_reward"],
            eval_ep_s=info["aggregated"]["eval_ep_s"],
        ))  # fmt: skip
        print(f"step {steps}: {table([rows[-1]]).splitlines()[-1]}", flush=True)
    return rows


def table(rows: list[Row]) -> str:
    """The figures as a markdown table, one row per budget."""
    lines = [
        f"| steps (batch {BATCH}) | CPU time | held-out L1 (x best constant) | held-out L1, "
        "action units | train L1 (x constant) | no-image control, held-out (x constant) | "
        "first sample, action units: policy / control / median first chunk | "
        "success | mean max reward |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.steps} | {r.cpu_s / 60:.0f} min | {r.held:.3f} | {r.held_units:.4f} | "
            f"{r.train:.3f} | {_or_dash(r.control, 3)} | "
            f"{r.first:.4f} / {_or_dash(r.first_control, 4)} / {r.first_median:.4f} | "
            f"{r.successes}/{r.episodes} | "
            f"{r.max_reward:.2f} |"
        )
    return "\n".join(lines)


def _or_dash(value: float | None, places: int) -> str:
    return "-" if value is None else f"{value:.{places}f}"


@click.command()
@click.argument("work", type=click.Path(file_okay=False, path_type=Path))
@click.option("--episodes", default=20, show_default=True, help="Demonstrations to record.")
@click.option("--val-episodes", default=3, show_default=True, help="Of them, held out.")
@click.option("--steps", default="500,1500,4000", show_default=True,
              help="Training budgets (steps of batch 8), comma-separated, increasing.")  # fmt: skip
@click.option("--eval-episodes", default=3, show_default=True, help="Closed-loop episodes each.")
@click.option("--control-steps", type=int, help="Train the no-image control only this far.")
def main(
    work: Path,
    episodes: int,
    val_episodes: int,
    steps: str,
    eval_episodes: int,
    control_steps: int | None,
) -> None:
    try:
        budgets = tuple(int(s) for s in steps.split(","))
    except ValueError:
        raise click.BadParameter(
            f"--steps: expected comma-separated integers, got {steps!r}"
        ) from None
    cfg = SimLearningConfig(work, episodes, val_episodes, budgets, eval_episodes, control_steps)
    start = time.perf_counter()
    rows = measure(cfg)
    print(f"\n{table(rows)}")
    print(f"eval: seeds {EVAL_SEED}.. at {cfg.eval_max_steps} steps, "
          f"{max(r.eval_ep_s for r in rows):.0f} s per episode at most; "
          f"all of it {(time.perf_counter() - start) / 60:.0f} min")  # fmt: skip


if __name__ == "__main__":
    main()

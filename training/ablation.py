"""The recipe ablation on held-out drives, and the final run of the chosen recipe.

    python -m training.ablation run --root DATA --epochs 150 [--configs A B ...] [--final D]
    python -m training.ablation table --root ../shared/data/camvid   # after export

``run`` trains every configuration of ``LADDER`` once per held-out CamVid drive
(``FOLDS``: all train+val frames except that drive), in parallel processes, and with
``--final NAME`` also trains that configuration on all 468 train+val frames (nothing
held out, nothing selected). Runs go to ``runs/ablation/<config>-<fold>`` and
``runs/camvid/<config>``.

``table`` exports each ablation run, evaluates it on its held-out drive from the original
PNG frames with the node's inference core (fp32, as ``training.evaluate``), and writes
``benchmarks/results/training_ablation.json`` (with ``--doc`` also its doc/ section):
each change's held-out class IoU per drive, their mean, and the GPU time the run took.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import subprocess
import sys
import time

from training import run_checkpoint

FOLDS = ('0006R0', '0001TP')
SCRIPT = Path(__file__).with_name('train_camvid.sh')
# Pieces the rungs share: A-base's augmentation; the stronger colour and gamma jitter,
# alone and with the wider scale; the softer class weights, 1 / ln(1.10 + p).
A_AUGMENT = ['--scale', '0.75', '1.5', '--color', '0.3']
COLOUR = ['--color', '0.4', '--gamma', '0.5']
PHOTOMETRIC = ['--scale', '0.5', '2.0'] + COLOUR
SOFTER_WEIGHTS = ['--class-weight-c', '1.10']
# The second stage trained on this CPU: 15 epochs on A-base with the Lovász term.
F_LOVASZ = ['--init', 'A-base', '--lovasz', '1', '--lr', '1e-4'] + A_AUGMENT
# The second stages trained on the GPU: 40 epochs on A-base at twice F-lovasz's rate.
LOVASZ_STAGE = ['--init', 'A-base', '--lovasz', '1', '--lr', '2e-4']
# Each rung adds one change to a rung before it; the first is the augmentation of the
# earlier two-stage recipe (scale 0.75-1.5, colour 0.3) trained in one stage. ``--init
# NAME`` rungs are a second stage: they start from rung NAME's run on the same frames
# (``--teacher NAME`` also names the run on the same frames).
LADDER = {
    'A-base': A_AUGMENT,
    'B-scale': ['--scale', '0.5', '2.0', '--color', '0.3'],
    'C-photometric': PHOTOMETRIC,
    'D-ema': PHOTOMETRIC + ['--ema', '0.999'],
    'E-softer-weights': PHOTOMETRIC + ['--ema', '0.999'] + SOFTER_WEIGHTS,
    # A-base over 300 epochs (``run --epochs 300``) instead of 200, as davidtvs/PyTorch-ENet
    # trains: A-base's held-out figures rose until its learning rate had decayed; trained
    # across sessions with its checkpoint committed as it went (0006R0 on this CPU, 0001TP
    # on the lent H100 and then this CPU)
    'O-300-epochs': A_AUGMENT,
    # A-base again with another seed: how far one first-stage run's randomness moves the
    # held-out figures (trained on the lent H100, drive 0006R0 only)
    'A-seed-1': A_AUGMENT + ['--seed', '1'],
    # a second stage on A-base: more epochs at a lower learning rate, then the same with the
    # Lovász-softmax term added (at weight 1, then 3), or with the cross-entropy over the
    # hard pixels only (OHEM at PSPNet's threshold, 0.7); F-ce tells what the extra epochs
    # alone give
    'F-ce': ['--init', 'A-base', '--lr', '1e-4'] + A_AUGMENT,
    'F-lovasz': F_LOVASZ,
    'F-lovasz-3': ['--init', 'A-base', '--lovasz', '3', '--lr', '1e-4'] + A_AUGMENT,
    'F-ohem': ['--init', 'A-base', '--ohem', '0.7', '--lr', '1e-4'] + A_AUGMENT,
    # F-lovasz with CutMix on half the frames: objects pasted into scenes they were not
    # seen in, a cheap stand-in for more drives
    'F-lovasz-cutmix': F_LOVASZ + ['--cutmix', '0.5'],
    # F-lovasz longer at twice the rate; then G with an average of the weights (H), G with
    # the photometric augmentation of C-photometric, since the test drives include dusk (I),
    # and I with softer class weights, 1 / ln(c + p) at c = 1.10 (J) and 1.20 (K), not 1.02
    'G-lovasz-long': LOVASZ_STAGE + A_AUGMENT,
    'H-lovasz-ema': LOVASZ_STAGE + A_AUGMENT + ['--ema', '0.999'],
    'I-lovasz-photometric': LOVASZ_STAGE + PHOTOMETRIC,
    'J-softer-weights': LOVASZ_STAGE + PHOTOMETRIC + SOFTER_WEIGHTS,
    'K-softest-weights': LOVASZ_STAGE + PHOTOMETRIC + ['--class-weight-c', '1.20'],
    # J's second stage again with another seed, trained on this CPU: how far one run's
    # randomness (and the device) moves the second stage's held-out figures
    'J-seed-1': LOVASZ_STAGE + PHOTOMETRIC + SOFTER_WEIGHTS + ['--seed', '1'],
    # J continued for 15 epochs at half its rate on frames at the scale the node sees (no
    # rescaling or crop; flip and photometric jitter kept): training at a mix of scales
    # but testing at one leaves the network's statistics off at test time (FixRes, Touvron
    # et al. 2019); trained on this CPU
    'M-test-scale': ['--init', 'J-softer-weights', '--lovasz', '1', '--lr', '1e-4',
                     '--scale', '1.0', '1.0'] + COLOUR + SOFTER_WEIGHTS,
    # J's second stage on O-300-epochs instead of A-base: whether the longer first stage
    # pays once the second stage has run; trained on this CPU
    'P-J-on-O': ['--init', 'O-300-epochs'] + LOVASZ_STAGE[2:] + PHOTOMETRIC + SOFTER_WEIGHTS,
    # J with stronger colour (0.6) and gamma (1.0: 0.5 to 2) jitter: re-estimating J's
    # batch-norm statistics on the un-augmented training frames cost the dusk drive
    # (0001TP) much and 0006R0 nothing, so the dusk drive leans on the jitter; trained on
    # this CPU
    'Q-stronger-jitter': LOVASZ_STAGE + ['--scale', '0.5', '2.0', '--color', '0.6',
                                         '--gamma', '1.0'] + SOFTER_WEIGHTS,
    # J distilled from the average of J's and P's softmax (--teacher): in a one-off
    # measurement (its script is not kept), averaging the held-out runs of two first stages
    # (A-base and O) beat each run, and averaging one first stage's runs did not; trained
    # on this CPU
    'R-distill': LOVASZ_STAGE + PHOTOMETRIC + SOFTER_WEIGHTS + ['--teacher', 'J-softer-weights',
                                                                'P-J-on-O'],
}

# (repeat, of): the same recipe, another seed
SEED_REPEATS = (('A-seed-1', 'A-base'), ('J-seed-1', 'J-softer-weights'))


def run_name(name: str, fold: str | None) -> str:
    return f'{name}-{fold}' if fold else name


def parent(name: str) -> str | None:
    """The rung a second-stage rung starts from (``--init NAME``), else None."""
    recipe = LADDER[name]
    return recipe[recipe.index('--init') + 1] if '--init' in recipe else None


def launch(root: str, name: str, fold: str | None, epochs: int, out: Path,
           extra: list[str]) -> subprocess.Popen:
    run_dir = out / run_name(name, fold)
    run_dir.mkdir(parents=True, exist_ok=True)
    # a rung's name in a recipe (--init, --teacher) means its run on the same frames
    recipe = [str(out / run_name(a, fold)) if a in LADDER else a for a in LADDER[name]]
    cmd = [sys.executable, '-m', 'training.train', '--root', root, '--splits', 'train', 'val',
           '--epochs', str(epochs), '--output-dir', str(run_dir), '--resume',
           *recipe, *extra] + (['--holdout', fold] if fold else [])
    log = open(run_dir / 'stdout.log', 'a')
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def seed_gaps(measured: dict[str, list]) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """Each seed repeat's gap to the run it repeats, drive by drive, where both exist."""
    missing = [None] * len(FOLDS)
    gaps = {}
    for repeat, of in SEED_REPEATS:
        pairs = zip(FOLDS, measured.get(repeat, missing), measured.get(of, missing))
        found = [(fold, abs(a - b)) for fold, a, b in pairs if a is not None and b is not None]
        if found:
            gaps[repeat, of] = found
    return gaps


def seed_noise(gaps: dict[tuple[str, str], list[tuple[str, float]]]) -> str:
    """What the table says of one run's noise: each seed repeat's gap, drive by drive."""
    if not gaps:
        return "One run's noise is not measured in this table."
    said = [f'{repeat} repeats {of} with another seed: their held-out class IoU differ by '
            + ' and '.join(f'{gap:.1f} ({fold})' for fold, gap in found) + ' points'
            for (repeat, of), found in gaps.items()]
    return '; '.join(said) + ', so differences of that size between rows are noise.'


def shipped() -> str:
    """The rung whose recipe ``training/train_camvid.sh`` trains and ships."""
    for line in SCRIPT.read_text().splitlines():
        if line.startswith('recipe='):
            return line.split('=', 1)[1].split()[0]
    raise ValueError(f'{SCRIPT} has no recipe= line')


def verdict(means: dict[str, float], noise: float) -> str:
    """Whether any row's mean beats the shipped recipe's by more than one run's noise."""
    ship = shipped()
    rule = (f'`training/train_camvid.sh` ships {ship}; another row replaces it only when its '
            f'mean class IoU is higher by more than the largest gap a seed repeat measures '
            f"({noise:.1f} points), since a smaller gain may be one run's luck and a "
            f'replacement costs a final run.')
    if ship not in means:
        return f'{rule} {ship} has no mean in this table.'
    repeats = {repeat for repeat, _ in SEED_REPEATS}
    better = [f'{name} (+{mean - means[ship]:.1f})' for name, mean in means.items()
              if name not in repeats and mean - means[ship] > noise]
    return f'{rule} ' + (f'Rows that do: {", ".join(better)}.' if better else 'No row does.')


def adaptation_gain(measured: dict[str, list], adapted: dict[str, list]) -> str:
    """What the shipped recipe's held-out figures become with ``adapt_statistics``."""
    ship = shipped()
    if ship not in adapted:
        return ''
    def drives(figures):
        return ', '.join(f'{f:.1f} ({fold})' for fold, f in zip(FOLDS, figures))
    raised = sum(b > a for n, f in adapted.items() for a, b in zip(measured[n], f))
    return (f'With `adapt_statistics`, {ship} scores {drives(adapted[ship])}, mean '
            f'{adapted[ship][-1]:.1f}, against {drives(measured[ship])} as trained; across '
            f'the table it raises {raised} of the {len(FOLDS) * len(adapted)} held-out '
            'figures.')


def run(args: argparse.Namespace) -> None:
    jobs = [(n, f, Path(args.runs) / 'ablation') for n in args.configs for f in FOLDS]
    jobs += [(n, None, Path(args.runs) / 'camvid') for n in args.final]
    t0 = time.time()
    procs = [launch(args.root, n, f, args.epochs, out, args.extra) for n, f, out in jobs]
    codes = [p.wait() for p in procs]
    print(f'{len(procs)} runs in {time.time() - t0:.0f} s, exit codes {codes}', flush=True)


def shown_epochs(rounds: dict[str, str]) -> str:
    """A row's epochs: once where its drives agree, else drive by drive."""
    if len(set(rounds.values())) == 1:
        return next(iter(rounds.values()))
    return '; '.join(f'{text} ({fold})' for fold, text in rounds.items())


def table(args: argparse.Namespace) -> str:
    from training.evaluate import heldout_metrics
    from training.report import read_log
    runs = Path(args.runs) / 'ablation'
    lines = ['| recipe | ' +
             ' | '.join(f'held-out {f} class IoU' for f in FOLDS) +
             ' | mean | mean class-avg accuracy | statistics adapting (' +
             ' / '.join(FOLDS) + ' / mean) | epochs | minutes per run | trained on |',
             '|---' * (len(FOLDS) + 7) + '|']

    def epochs(name: str, fold: str) -> tuple[str, bool]:
        """A run's epochs as the table shows them, and whether it and the runs it continues
        have all ended."""
        run_dir = runs / run_name(name, fold)
        done = len(read_log(run_dir / 'log.csv'))
        planned = run_checkpoint.load(run_dir)['args']['epochs']
        text = str(done) if done == planned else f'{done} of {planned}, in progress'
        first = parent(name)
        if not first:
            return text, done == planned
        before, ended = epochs(first, fold)
        return f'{before} + {text}', ended and done == planned

    measured, means, adapted_figures = {}, {}, {}
    for name in LADDER:
        figures, accuracy, adapted, minutes, rounds, devices = [], [], [], [], {}, {}
        for fold in FOLDS:
            run_dir = runs / run_name(name, fold)
            if not (run_dir / run_checkpoint.NAME).exists():
                figures.append(None)
                continue
            rounds[fold], ended = epochs(name, fold)
            if not ended:  # a figure mid-schedule is no recipe's result
                figures.append(None)
                continue
            metrics = heldout_metrics(run_dir, args.root)
            figures.append(metrics['mean_iou'])
            accuracy.append(metrics['class_avg_accuracy'])
            adapted.append(heldout_metrics(run_dir, args.root, adapt=True)['mean_iou'])
            minutes.append(sum(float(r['epoch_seconds'])
                               for r in read_log(run_dir / 'log.csv')) / 60)
            devices.update(dict.fromkeys(run_checkpoint.devices(run_checkpoint.load(run_dir))))
        if all(f is None for f in figures):
            continue
        measured[name] = figures
        shown = [f'{f:.1f}' if f is not None else '' for f in figures]
        done = [f for f in figures if f is not None]
        both = len(done) == len(FOLDS)
        if both:
            means[name] = sum(done) / len(done)
        mean = f'{means[name]:.1f}' if both else ''
        acc = f'{sum(accuracy) / len(accuracy):.1f}' if both else ''
        adapt = ''
        if both:
            adapted_figures[name] = adapted + [sum(adapted) / len(adapted)]
            adapt = ' / '.join(f'{f:.1f}' for f in adapted_figures[name])
        lines.append(f'| {name}: `{" ".join(LADDER[name])}` | {" | ".join(shown)} | {mean} | '
                     f'{acc} | {adapt} | {shown_epochs(rounds)} | {max(minutes):.0f} | '
                     f'{run_checkpoint.DEVICE_SEP.join(devices)} |')
    from reporting.tables import header, publish
    gaps = seed_gaps(measured)
    text = '\n'.join([
        header('Recipe ablation on held-out CamVid drives'),
        'Each run trains on every CamVid train+val frame except one whole drive and is '
        'measured on that drive (class IoU, void excluded), from the original PNG frames '
        "with the node's inference core in fp32: `python -m training.ablation table`. "
        'Every run is one seed with bf16 autocast, trained where the last column says '
        '(several runs sharing the device); the machine above measured the figures. Rows '
        'differ in schedule where the epochs column says so: they compare recipes as '
        'trained, not one change at a time. A second-stage row (`--init NAME`) continues '
        "rung NAME's run on the same frames, so its epochs read 'first stage + second "
        "stage' and its minutes are the second stage's. A drive whose run is still "
        "training reads 'N of M, in progress' and has no figure until it ends. "
        "The 'statistics adapting' column measures the same run with the node's "
        '`adapt_statistics` (batch-norm means that follow the drive, '
        '`enet_ros/adaptation.py`): frames fed in order at their camera time, '
        '`python -m training.evaluate --adapt`. '
        f'{seed_noise(gaps)} '
        f'{verdict(means, max((g for found in gaps.values() for _, g in found), default=0))} '
        f'{adaptation_gain(measured, adapted_figures)}',
        '',
        *lines,
    ])
    publish('training_ablation', text + '\n', args.doc)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='job', required=True)
    r = sub.add_parser('run')
    r.add_argument('--root', required=True)
    r.add_argument('--epochs', type=int, required=True)
    r.add_argument('--configs', nargs='*', default=list(LADDER), choices=list(LADDER))
    r.add_argument('--final', nargs='*', default=[], choices=list(LADDER))
    r.add_argument('--runs', default='runs')
    r.add_argument('--extra', nargs=argparse.REMAINDER, default=[],
                   help='further training.train arguments for every run')
    t = sub.add_parser('table')
    t.add_argument('--root', required=True)
    t.add_argument('--runs', default='runs')
    t.add_argument('--doc', action='store_true')
    args = p.parse_args(argv)
    run(args) if args.job == 'run' else table(args)


if __name__ == '__main__':
    main()

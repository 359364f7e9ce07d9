"""What ``segmentation.launch.py`` passes to the node, without needing ``launch`` itself.

A launch argument overrides the parameters file only when the user gives it: every
node-parameter argument defaults to '' (not given), and ``overrides`` drops those, so the
params file decides everything the command line did not say. Values are typed from the
parameter table (``enet_ros.parameters``).
"""

from __future__ import annotations

from enet_ros.parameters import PARAMETERS

# node parameters people set on the command line (the rest live in the params file)
LAUNCH_PARAMETERS = ('model_path', 'device', 'precision', 'backend', 'adapt_statistics',
                     'input_width', 'input_height', 'input_compressed', 'cameras',
                     'num_threads')
_TABLE = {p.name: p for p in PARAMETERS}


def description(name: str) -> str:
    return f'{_TABLE[name].description} Empty: the params file decides.'


def _typed(name: str, text: str):
    default = _TABLE[name].default
    if isinstance(default, bool):
        if text.lower() not in ('true', 'false'):
            raise ValueError(f'launch argument {name}:={text!r}: expected true or false')
        return text.lower() == 'true'
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f'launch argument {name}:={text!r}: expected an integer') from None
    if isinstance(default, list):  # cameras:=front,rear
        return [v.strip() for v in text.split(',')]
    return text


def overrides(given: dict[str, str], use_sim_time: str = '') -> dict:
    """Node parameters for the launch arguments the user gave ('' = not given)."""
    out = {name: _typed(name, value) for name, value in given.items()
           if name in LAUNCH_PARAMETERS and value != ''}
    if use_sim_time != '':
        out['use_sim_time'] = use_sim_time.lower() == 'true'
    return out

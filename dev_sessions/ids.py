"""Human session ids: ``<champion>-<role>``, e.g. ``fizz-top``; and the tmux names built from them.

Ids are picked at random so that parallel creators rarely collide on the first try; the caller holds
the store lock and passes every id in use (store records and live tmux sessions), so the pick is final.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection
from typing import NewType

from dev_sessions.errors import IdsExhausted

SessionId = NewType("SessionId", str)

TMUX_PREFIX = "dev-"

# League of Legends champions, short forms as players say them; no hyphens, so the role is always
# the part after the last hyphen.
CHAMPIONS = (
    "aatrox",
    "ahri",
    "akali",
    "akshan",
    "alistar",
    "amumu",
    "anivia",
    "annie",
    "aphelios",
    "ashe",
    "aurelion",
    "azir",
    "bard",
    "belveth",
    "blitz",
    "brand",
    "braum",
    "briar",
    "cait",
    "camille",
    "cass",
    "chogath",
    "corki",
    "darius",
    "diana",
    "draven",
    "ekko",
    "elise",
    "evelynn",
    "ezreal",
    "fiddle",
    "fiora",
    "fizz",
    "galio",
    "gangplank",
    "garen",
    "gnar",
    "gragas",
    "graves",
    "gwen",
    "hecarim",
    "heimer",
    "hwei",
    "illaoi",
    "irelia",
    "ivern",
    "janna",
    "jarvan",
    "jax",
    "jayce",
    "jhin",
    "jinx",
    "kaisa",
    "kalista",
    "karma",
    "karthus",
    "kassadin",
    "kata",
    "kayle",
    "kayn",
    "kennen",
    "khazix",
    "kindred",
    "kled",
    "kogmaw",
    "ksante",
    "leblanc",
    "lee",
    "leona",
    "lillia",
    "lissandra",
    "lucian",
    "lulu",
    "lux",
    "malph",
    "malz",
    "maokai",
    "milio",
    "mf",
    "mordekaiser",
    "morgana",
    "mundo",
    "naafiri",
    "nami",
    "nasus",
    "nautilus",
    "neeko",
    "nidalee",
    "nilah",
    "nocturne",
    "nunu",
    "olaf",
    "orianna",
    "ornn",
    "pantheon",
    "poppy",
    "pyke",
    "qiyana",
    "quinn",
    "rakan",
    "rammus",
    "reksai",
    "rell",
    "renata",
    "renekton",
    "rengar",
    "riven",
    "rumble",
    "ryze",
    "samira",
    "sejuani",
    "senna",
    "seraphine",
    "sett",
    "shaco",
    "shen",
    "shyvana",
    "singed",
    "sion",
    "sivir",
    "skarner",
    "smolder",
    "sona",
    "soraka",
    "swain",
    "sylas",
    "syndra",
    "tahm",
    "taliyah",
    "talon",
    "taric",
    "teemo",
    "thresh",
    "tristana",
    "trundle",
    "tryndamere",
    "tf",
    "twitch",
    "udyr",
    "urgot",
    "varus",
    "vayne",
    "veigar",
    "velkoz",
    "vex",
    "vi",
    "viego",
    "viktor",
    "vlad",
    "volibear",
    "warwick",
    "wukong",
    "xayah",
    "xerath",
    "xin",
    "yasuo",
    "yone",
    "yorick",
    "yuumi",
    "zac",
    "zed",
    "zeri",
    "ziggs",
    "zilean",
    "zoe",
    "zyra",
)
ROLES = ("top", "jg", "mid", "adc", "sup")

_ID_SHAPE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # fullmatch: "$" accepts a trailing newline


def allocate(in_use: Collection[str], rng: random.Random | None = None) -> SessionId:
    """A free id: random tries first, then an exhaustive scan so that a nearly full space still works."""
    pick = rng or random.SystemRandom()
    taken = set(in_use)
    for _ in range(32):
        candidate = f"{pick.choice(CHAMPIONS)}-{pick.choice(ROLES)}"
        if candidate not in taken:
            return SessionId(candidate)
    free = [f"{c}-{r}" for c in CHAMPIONS for r in ROLES if f"{c}-{r}" not in taken]
    if not free:
        raise IdsExhausted(in_use=len(taken))
    return SessionId(pick.choice(free))


def is_valid(session_id: str) -> bool:
    """Whether a string can be a session id at all (used to refuse junk before touching tmux)."""
    return isinstance(session_id, str) and len(session_id) <= 64 and bool(_ID_SHAPE.fullmatch(session_id))


def tmux_name(session_id: str) -> str:
    return TMUX_PREFIX + session_id


def from_tmux_name(name: str) -> SessionId | None:
    if name.startswith(TMUX_PREFIX) and len(name) > len(TMUX_PREFIX):
        return SessionId(name[len(TMUX_PREFIX) :])
    return None

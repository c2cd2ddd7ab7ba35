"""Transfer audio: more of the world than cry-data holds, built from Debian packages and rendered.

`python -m pi_monitor.training transfer` fills <cache>/transfer with 16 kHz mono FLAC (pieces
of at most 20 s) and a manifest.csv with cry-data's columns, every row `not_cry`: game and
album music, speech in languages the corpus lacks, farm animals and household sounds (each
package's licence read from its copyright file), and lullabies, music boxes and sampled voices
that fluidsynth renders from the melodies in `melodies.py`. Each source is capped in minutes
so no big package dominates, is built once (a second run reuses it), and is seeded.
Nothing is installed: packages are fetched with `apt-get download` and unpacked in the cache.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import heapq
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from pi_monitor.training import debian
from pi_monitor.training.corpus import DEFAULT_CACHE, resample
from pi_monitor.training.lullabies import (
    INSTRUMENT_NAMES,
    RENDER_RATE,
    Fluidsynth,
    RenderError,
    plan,
)
from pi_monitor.training.melodies import TRADITIONAL, Melody, generate

SAMPLE_RATE = 16000
PIECE_S = 20.0
SILENT_DBFS = -60.0  # pieces quieter than this (RMS) are left out: fades, gaps, tails
BUILD_VERSION = 2  # bump when a change alters what an unchanged source produces
AUDIO_SUFFIXES = (".ogg", ".oga", ".wav", ".flac", ".mp3", ".opus")
COLUMNS = ("path", "label", "category", "source", "group", "license", "orig_sr", "duration_s")
USABLE_LICENCE = re.compile(
    r"^(GPL|LGPL|GFDL|CC-BY|CC0|public-domain|free-art|MIT|Expat|BSD|Drascula-License)"
)

Fetch = Callable[[str, Path], Path]


@dataclass(frozen=True)
class Take:
    """Files of a package to take: a glob on the path inside it, their category, and a regex
    whose one named group is the recording unit (`track`, `spk`, `lang`, `file`...)."""

    glob: str
    category: str
    group: str


TRACK = r"(?P<track>[^/]+)\.\w+$"
FILE = r"(?P<file>[^/]+)\.\w+$"
VOICE_PACK = r"voices/(?P<pack>[^/]+)/"


@dataclass(frozen=True)
class PackageSource:
    """Audio taken from one Debian package, at most `cap_minutes` of it."""

    package: str
    takes: tuple[Take, ...]
    licence: str | None  # None: per file, from the package's machine-readable copyright
    evidence: str  # regex the copyright file must match: the licence as we read it
    cap_minutes: float
    rcc_prefix: str | None = None  # audio sits in Qt .rcc bundles, upstream paths below this

    @property
    def source(self) -> str:
        return f"debian:{self.package}"


SOUNDFONTS = {  # name: (package, file inside it, licence, evidence in its copyright file)
    "fluidr3": (
        "fluid-soundfont-gm",
        "usr/share/sounds/sf2/FluidR3_GM.sf2",
        "MIT",
        r"release Fluid under the MIT license",
    ),
    "timgm6mb": (
        "timgm6mb-soundfont",
        "usr/share/sounds/sf2/TimGM6mb.sf2",
        "GPL-2",
        r"Files: TimGM6mb\.sf2\n(?:.+\n)*?License: GPL-2\n",
    ),
}
# fluidsynth 2.3 and the libraries a bare Debian 12 lacks for it (the rest are common ones).
FLUIDSYNTH_PACKAGES = (
    "fluidsynth",
    "libfluidsynth3",
    "libinstpatch-1.0-2",
    "libsdl2-2.0-0",
    "libdecor-0-0",
    "libwayland-cursor0",
    "libwayland-egl1",
)


@dataclass(frozen=True)
class RenderedSource:
    """Melodies rendered with one soundfont, by instruments or by sampled voices."""

    soundfont: str
    voice: bool
    melodies: tuple[Melody, ...]
    cap_minutes: float

    @property
    def source(self) -> str:
        return f"generated:fluidsynth-{'voice-' if self.voice else ''}{self.soundfont}"

    @property
    def licence(self) -> str:
        package, _, licence, _ = SOUNDFONTS[self.soundfont]
        return (
            f"generated: public-domain or generated melodies; {package} soundfont {licence}; "
            "fluidsynth LGPL-2.1+"
        )


def _melodies(slot: int, generated: int, seed: int) -> tuple[Melody, ...]:
    """Every fourth traditional tune from `slot`, plus new ones: no melody is in two sources,
    so a melody's group can never sit on both sides of a split."""
    new = tuple(
        generate(f"generated-{slot}-{i:02d}", seed=seed * 10_000 + slot * 100 + i)
        for i in range(generated)
    )
    return TRADITIONAL[slot::4] + new


GPL2_PLUS = r"License: GPL-2\+"
MUSIC_MINUTES = 20.0
SPEECH_MINUTES = 15.0
OUTSIDE_MINUTES = 10.0  # each outside source: all its animal calls, a share of its speech


def catalogue(seed: int = 0) -> tuple[PackageSource | RenderedSource, ...]:
    """Every source of the transfer set with its cap; the licences are those the packages'
    copyright files state (checked against `evidence` at build time)."""
    music = (Take("*", "music", TRACK),)
    return (
        PackageSource(
            "wesnoth-1.16-music",
            music,
            "GPL-2+",
            r"General Public License version 2\s+or at your option any later version",
            MUSIC_MINUTES,
        ),
        PackageSource(
            "hyperrogue-music",
            (Take("*/hyperrogue/music/*", "music", TRACK),),
            "GPL-2+",
            GPL2_PLUS,
            MUSIC_MINUTES,
        ),
        PackageSource("warzone2100-music", music, "GPL-2+", GPL2_PLUS, MUSIC_MINUTES),
        PackageSource("planetblupi-music-ogg", music, "GPL-3+", r"License: GPL-3\+", MUSIC_MINUTES),
        PackageSource(
            "singularity-music",
            music,
            "CC-BY-SA-3.0",
            r"this License: Attribution, ShareAlike\.[\s\S]*Attribution-ShareAlike 3\.0",
            MUSIC_MINUTES,
        ),
        PackageSource("asc-music", music, "GPL-2+", GPL2_PLUS, MUSIC_MINUTES),
        PackageSource(
            "drascula-music",
            music,
            "Drascula-License (free to use, modify and redistribute; no fee for the game "
            "itself; DFSG-free)",
            r"License: Drascula-License",
            MUSIC_MINUTES,
        ),
        PackageSource(
            "colobot-common-sounds",
            (Take("*/colobot/music/*", "music", TRACK),),
            "GPL-3+",
            r"License: GPL-3\+",
            MUSIC_MINUTES,
        ),
        PackageSource(
            "fillets-ng-data",
            (
                Take("*/fillets-ng/music/*", "music", TRACK),
                Take("*/fillets-ng/sound/*/en/*", "adult_speech", r"/(?P<cast>en)/[^/]+$"),
            ),
            "GPL-2",
            r"version 2 dated June, 1991",
            MUSIC_MINUTES,
        ),
        *(
            PackageSource(
                f"fillets-ng-data-{lang}",
                (Take(f"*/sound/*/{lang}/*", "adult_speech", rf"/(?P<cast>{lang})/[^/]+$"),),
                "GPL-2",
                r"version 2 dated June, 1991",
                SPEECH_MINUTES,
            )
            for lang in ("cs", "nl")
        ),
        PackageSource(
            "klettres-data",
            (Take("*/klettres/*/*/*", "adult_speech", r"klettres/(?P<lang>[^/]+)/"),),
            "GPL-2+",
            GPL2_PLUS,
            SPEECH_MINUTES,
        ),
        PackageSource(
            "ktuberling-data",
            (Take("*/ktuberling/sounds/*/*", "adult_speech", r"sounds/(?P<lang>[^/]+)/"),),
            "GPL-2+",
            GPL2_PLUS,
            SPEECH_MINUTES,
        ),
        *(
            PackageSource(
                f"asterisk-core-sounds-{lang}-wav",
                (Take("*/asterisk/sounds/*", "adult_speech", r"sounds/(?P<spk>[^/]+)/"),),
                licence,
                rf"Files: {stanza}\n(?:.+\n)*?License: {licence}\n",
                10.0,
            )
            for lang, stanza, licence in (
                ("es", r"\*", "CC-BY-SA-3.0"),
                ("fr", r"fr-\*", "CC-BY-SA-3.0"),
                ("it", r"it-\*", "CC-BY-3.0"),
                ("ru", r"ru-\*", "CC-BY-3.0"),
            )
        ),
        PackageSource(
            "lincity-ng-data",
            (
                Take("*/lincity-ng/music/*", "music", TRACK),
                Take("*/lincity-ng/sounds/*", "ambient_noise", r"(?P<sfx>[A-Za-z]+)\d*\.\w+$"),
            ),
            "GPL-2+ (sound effects also CC-BY-SA-2.0)",
            r"sound effects are dual-licensed under the GNU\s+General Public",
            SPEECH_MINUTES,
        ),
        PackageSource(
            "gcompris-qt-data",
            (
                Take("*/explore_farm_animals/*/cat.ogg", "cat", FILE),
                Take("*/explore_farm_animals/*/dog.ogg", "dog", FILE),
                Take("*/memory-sound/*/LRBark*", "dog", FILE),
                Take("*/explore_farm_animals/*", "animal_other", FILE),
                Take("*/memory-sound/*/LRFrogs*", "animal_other", FILE),
                Take("*/memory-sound/*/LRRain*", "ambient_rain", FILE),
                Take("*/memory-sound/*/LRTrain*", "ambient_noise", FILE),
                Take("*/memory-sound/*/LRStartAndStopCarEngine*", "ambient_noise", FILE),
                Take("*/explore_world_music/*", "music", FILE),
                Take("*/instruments/*", "music", FILE),
                Take("*/memory-sound/*/guitar_melody*", "music", FILE),
                *(
                    Take(f"*/{where}*", "household", FILE)
                    for where in (
                        "canal_lock/resource/door",
                        "canal_lock/resource/water_fill",
                        "memory-sound/resource/LRDoor",
                        "memory-sound/resource/LRRing",
                        "memory-sound/resource/LRObject_falling",
                        "memory-sound/resource/LRHits",
                        "memory-sound/resource/LRHeart_beat",
                        "memory-sound/resource/LRApplauses",
                        "money/resource/money",
                    )
                ),
            ),
            None,
            r"Files: src/activities/memory-sound/resource/\*_LA\.ogg",
            MUSIC_MINUTES,
            rcc_prefix="/gcompris/",
        ),
        RenderedSource("fluidr3", False, _melodies(0, 24, seed), 35.0),
        RenderedSource("timgm6mb", False, _melodies(1, 24, seed), 35.0),
        RenderedSource("fluidr3", True, _melodies(2, 12, seed), 15.0),
        RenderedSource("timgm6mb", True, _melodies(3, 12, seed), 15.0),
    )


# qabcs-data's noises, named like its pictures; pics/animals and pics/instrument say which
# is which (the rest are toys and things).
QABCS_ANIMALS = (  # space-separated
    "aesculapian_snake albatross bear bird blister_beetle booby calf cat chimpanzee "
    "chinchilla cow crow deer dog dolphin duck eagle-owl elephant emu ferret fish flamingo "
    "foal frog giant_panda giraffe goose grasshopper guinea_fowl hamster hedgehog heron horse "
    "hyena iguana iora jaguar jerboa koala ladybug lion lynx moose moth mouse newt otter owl "
    "pelican pheasant pig porcupine python quail quetzal raccoon rhinoceros rooster sheep "
    "snail sparrow squirrel stork tiger turtle urchin vulture wallaby weevil whale wolf "
    "wood_grouse yak zebra"
)
QABCS_INSTRUMENTS = (  # space-separated
    "accordion aeoline bagpipes bass_drum cello changu clarinet cuica cymbals drums dulzaina "
    "electric_guitar erhu flute gamba grand_piano guitar hand_organ hang harmonica harp "
    "iotshin ipu jack jug kazoo lute maracas natural_horn ney oboe ode oedephon organ piano "
    "pipe pishik quarter_note quena rabel ratchet recorder rozhok saxophone slit_drum sound "
    "spoons squeezebox timpani topshuur trumpet ukulele violin washint western_concert_flute "
    "whistle xun xylophone yangqin yobel youhikko yueqin zhaleyka zither zozulka zurna"
)


def outside_sources(heard: set[str]) -> tuple[PackageSource, ...]:
    """The outside catalogue less any source in `heard` (the training corpus's sources): a
    corpus that grows must not turn the check into a test on training audio."""
    return tuple(s for s in outside_catalogue() if s.source not in heard)


def outside_catalogue() -> tuple[PackageSource, ...]:
    """Debian sound libraries that no training source holds, for a false-alarm check on sounds
    the student never heard (`evaluate --on outside`): cats and other animals, coughs, laughs,
    screams and shouted lines, singing, music. Never trained on: a test keeps them out of
    `catalogue`, and `outside_sources` out of whatever the corpus holds (cry-data has
    tuxpaint-stamps-default, so it is not here)."""
    sounds = "*/scratch/Media/Sounds"
    return (
        PackageSource(
            "scratch",
            (
                *(
                    Take(f"{sounds}/Animal/{n}", "cat", FILE)
                    for n in ("Cat.*", "Kitten.*", "Meow.*")
                ),
                Take(f"{sounds}/Animal/*", "animal_other", FILE),
                Take(f"{sounds}/Human/F*", "sound_effects", FILE),  # finger snap, footsteps
                *(
                    Take(f"{sounds}/Human/{n}*", "human_sounds", FILE)  # not BabyCry: a cry
                    for n in ("Cough", "Laugh", "PartyNoise", "Scream", "Slurp", "Sneeze")
                ),
                Take(f"{sounds}/Vocals/*", "singing_unknown_sex", FILE),
                *(
                    Take(f"{sounds}/{folder}/*", "music", FILE)
                    for folder in ("Music Loops", "Instruments", "Percussion")
                ),
                *(
                    Take(f"{sounds}/{f}/*", "sound_effects", FILE)
                    for f in ("Effects", "Electronic")
                ),
            ),
            "CC-BY-SA-3.0",
            r"Files: Help/\* Media/\* Projects\n(?:.+\n)*?License: CC-BY-SA-3\.0\n",
            OUTSIDE_MINUTES,
        ),
        PackageSource(
            "qabcs-data",
            (
                Take("*/abcs/all/noises/cat.ogg", "cat", FILE),
                *(
                    Take(f"*/abcs/all/noises/{n}.ogg", "animal_other", FILE)
                    for n in QABCS_ANIMALS.split()
                ),
                *(
                    Take(f"*/abcs/all/noises/{n}.ogg", "music", FILE)
                    for n in QABCS_INSTRUMENTS.split()
                ),
                Take("*/abcs/all/noises/*", "sound_effects", FILE),
            ),
            "GPL-3+",
            r"Files: \*\n(?:.+\n)*?License: GPL-3\+\n",
            OUTSIDE_MINUTES,
        ),
        PackageSource(
            "hedgewars-data",
            (
                Take("*/voices/Singer/*", "singing_unknown_sex", VOICE_PACK),
                Take("*/voices/*", "adult_speech", VOICE_PACK),  # lines, shouts, laughs
            ),
            "GFDL-1.3",
            r"Files: share/hedgewars/Data/Sounds/\*\n(?:.+\n)*?License: GFDL-1\.3\n",
            OUTSIDE_MINUTES,
        ),
        PackageSource(
            "brainparty-data",
            (Take("*/brainparty/meow.wav", "cat", FILE),),
            "GPL-3+",
            r"Files: \*\n(?:.+\n)*?License: GPL-3\+\n",
            OUTSIDE_MINUTES,
        ),
        PackageSource(
            "sound-icons",
            (Take("*/gummy-cat*", "cat", FILE),),
            "GPL-2+",
            GPL2_PLUS,
            OUTSIDE_MINUTES,
        ),
        PackageSource(
            "xemacs21-basesupport",
            (
                Take("*/sounds/catmeow.wav", "cat", FILE),
                Take("*/sounds/bark.wav", "dog", FILE),
                Take("*/sounds/cuckoo.wav", "animal_other", FILE),
            ),
            "GPL",
            r"All under the GPL\.",
            OUTSIDE_MINUTES,
        ),
    )


@dataclass(frozen=True)
class Candidate:
    """An audio file a package source may take pieces from."""

    file: Path  # where it can be read now
    name: str  # its path inside the package (or inside the Qt bundle)
    category: str
    group: str
    licence: str
    sample_rate: int
    seconds: float


@dataclass(frozen=True)
class RenderedClip:
    """What the manifest says of every piece of one rendering."""

    category: str
    group: str
    licence: str
    sample_rate: int


def pieces(seconds: float, longest: float = PIECE_S) -> list[tuple[float, float]]:
    """(start, stop) of equal pieces of at most `longest` seconds covering `seconds`."""
    n = max(1, int(np.ceil(seconds / longest - 1e-9)))
    return [(seconds * k / n, seconds * (k + 1) / n) for k in range(n)]


def _rank(seed: int, text: str) -> str:
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()


Piece = tuple[Candidate, int, float, float]  # file, piece number, start and stop in seconds


def _balance(queues: list[list[Piece]]) -> list[Piece]:
    """Merge queues, always taking the next piece from the queue that has given the least
    time so far (the earlier queue on ties), so short and long pieces share time fairly."""
    heap = [(0.0, i, 0) for i, q in enumerate(queues) if q]
    out = []
    while heap:
        taken, i, at = heapq.heappop(heap)
        piece = queues[i][at]
        out.append(piece)
        if at + 1 < len(queues[i]):
            heapq.heappush(heap, (taken + piece[3] - piece[2], i, at + 1))
    return out


def schedule(candidates: list[Candidate], seed: int) -> list[Piece]:
    """Pieces in the order a capped source takes them: categories share the time equally,
    within one its groups, within a group its files (each level in a seeded order), so a
    cap spreads over kinds of sound, tracks, speakers and files instead of exhausting the
    first few."""
    tree: dict[str, dict[str, list[Candidate]]] = {}
    for c in sorted(candidates, key=lambda c: _rank(seed, c.name)):
        tree.setdefault(c.category, {}).setdefault(c.group, []).append(c)

    def ordered(level: dict) -> list:
        return [level[k] for k in sorted(level, key=lambda k: _rank(seed, k))]

    def file_pieces(c: Candidate) -> list[Piece]:
        return [(c, k, start, stop) for k, (start, stop) in enumerate(pieces(c.seconds))]

    def group_pieces(files: list[Candidate]) -> list[Piece]:
        return _balance([file_pieces(c) for c in files])

    def category_pieces(groups: dict[str, list[Candidate]]) -> list[Piece]:
        return _balance([group_pieces(files) for files in ordered(groups)])

    return _balance([category_pieces(groups) for groups in ordered(tree)])


class Report:
    """What a build did, for its summary: files left out and why, sources built or reused."""

    def __init__(self) -> None:
        self.skipped: dict[str, int] = {}
        self.built: list[str] = []
        self.reused: list[str] = []

    def skip(self, source: str, reason: str) -> None:
        key = f"{source}: {reason}"
        self.skipped[key] = self.skipped.get(key, 0) + 1


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _loud_enough(audio: np.ndarray) -> bool:
    return len(audio) > 0 and 10 * np.log10(np.mean(audio**2) + 1e-20) > SILENT_DBFS


class _Writer:
    """Writes one source's pieces as FLAC into its (partial) folder and collects their
    manifest rows, with the paths they will have in the finished folder, up to the cap."""

    def __init__(self, folder: Path, final: str, source: str, cap_minutes: float) -> None:
        self.folder, self.final, self.source = folder, final, source
        self.left_s = cap_minutes * 60
        self.rows: list[dict[str, str]] = []

    @property
    def full(self) -> bool:
        return self.left_s <= 0

    def add(self, name: str, audio: np.ndarray, clip: Candidate | RenderedClip) -> None:
        soundfile.write(
            self.folder / f"{name}.flac", np.clip(audio, -1.0, 1.0), SAMPLE_RATE, "PCM_16"
        )
        seconds = len(audio) / SAMPLE_RATE
        self.left_s -= seconds
        self.rows.append(
            {
                "path": f"{self.final}/{name}.flac",
                "label": "not_cry",
                "category": clip.category,
                "source": self.source,
                "group": clip.group,
                "license": clip.licence,
                "orig_sr": str(clip.sample_rate),
                "duration_s": f"{seconds:.2f}",
            }
        )


def _check_licence(package: str, root: Path, evidence: str) -> str:
    """The package's copyright text, once it is seen to still say the licence recorded here."""
    copyright = debian.copyright_text(root, package)
    if not re.search(evidence, copyright):
        raise debian.PackageError(
            f"{package}: its copyright file no longer matches {evidence!r}; read it "
            "again and update the licence in transfer.catalogue"
        )
    return copyright


def _candidates(spec: PackageSource, root: Path, scratch: Path, report: Report) -> list[Candidate]:
    """The package's audio files the source takes, with category, group and licence."""
    copyright = _check_licence(spec.package, root, spec.evidence)
    files: list[tuple[str, Path]] = []
    if spec.rcc_prefix is None:
        files = [
            (p.relative_to(root).as_posix(), p)
            for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.suffix.lower() in AUDIO_SUFFIXES
        ]
    else:
        for bundle in sorted(root.rglob("*.rcc")):
            for name, blob in debian.rcc_entries(bundle):
                if name.startswith(spec.rcc_prefix) and name.lower().endswith(AUDIO_SUFFIXES):
                    file = scratch / _slug(name)
                    file.write_bytes(blob)
                    files.append((name.removeprefix(spec.rcc_prefix), file))
    out = []
    for name, file in files:
        take = next((t for t in spec.takes if fnmatch.fnmatchcase(name, t.glob)), None)
        if take is None:
            continue
        licence = spec.licence or debian.dep5_licence(copyright, name) or "unknown"
        if not USABLE_LICENCE.match(licence) or "NC" in licence:
            report.skip(spec.source, f"licence {licence} does not allow use")
            continue
        unit = re.search(take.group, name)
        if unit is None:
            raise ValueError(f"{spec.package}: group pattern {take.group!r} does not match {name}")
        ((kind, value),) = unit.groupdict().items()
        try:
            info = soundfile.info(file)
        except (RuntimeError, soundfile.LibsndfileError):
            report.skip(spec.source, "unreadable audio")
            continue
        group = f"{spec.source}|{kind}:{value}"
        out.append(
            Candidate(file, name, take.category, group, licence, info.samplerate, info.duration)
        )
    return out


def _build_package(
    spec: PackageSource, writer: _Writer, scratch: Path, seed: int, fetch: Fetch, report: Report
) -> None:
    root = fetch(spec.package, scratch / "package")
    (writer.folder / "packages.txt").write_text(f"{spec.package} {debian.version(root)}\n")
    (scratch / "rcc").mkdir()
    candidates = _candidates(spec, root, scratch / "rcc", report)
    if not candidates:
        raise debian.PackageError(f"{spec.package}: no audio matches {spec.takes}")
    prefix = _common_dir([c.name for c in candidates])
    for c, k, start, stop in schedule(candidates, seed):
        if writer.full:
            break
        frames = (round(start * c.sample_rate), round(stop * c.sample_rate))
        audio, sr = soundfile.read(c.file, start=frames[0], stop=frames[1], always_2d=True)
        x = resample(audio.mean(axis=1), sr, SAMPLE_RATE)
        if not _loud_enough(x):
            report.skip(spec.source, "silent piece")
            continue
        stem = Path(c.name).with_suffix("").as_posix().removeprefix(prefix).strip("/")
        writer.add(f"{_slug(stem)}-{k:02d}", x, c)


def _common_dir(names: list[str]) -> str:
    """The folder all `names` share (file names are written below it)."""
    parts = [Path(n).parts[:-1] for n in names]
    common = []
    for level in zip(*parts, strict=False):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    return "/".join(common)


def fetch_tools(tools: Path, fetch: Fetch = debian.fetch) -> Fluidsynth:
    """fluidsynth, its libraries and both soundfonts unpacked under `tools` (once)."""
    for package in (*FLUIDSYNTH_PACKAGES, *(p for p, *_ in SOUNDFONTS.values())):
        if not (tools / package).is_dir():
            with tempfile.TemporaryDirectory(prefix=".fetch-", dir=tools.parent) as tmp:
                fetch(package, Path(tmp)).rename(tools / package)
    synth = Fluidsynth.find(tools)
    if synth is None:
        raise debian.PackageError(f"fluidsynth is not in {tools}; remove that folder and rerun")
    return synth


def _build_rendered(
    spec: RenderedSource, writer: _Writer, tools: Path, seed: int, fetch: Fetch
) -> None:
    tools.mkdir(parents=True, exist_ok=True)
    synth = fetch_tools(tools, fetch)
    package, file, _, evidence = SOUNDFONTS[spec.soundfont]
    _check_licence(package, tools / package, evidence)
    used = ("fluidsynth", "libfluidsynth3", package)
    (writer.folder / "packages.txt").write_text(
        "".join(f"{p} {debian.version(tools / p)}\n" for p in used)
    )
    plan_seed = int(_rank(seed, spec.source)[:8], 16)
    for i, a in enumerate(plan(spec.melodies, spec.voice, spec.cap_minutes * 1.2, plan_seed)):
        if writer.full:
            break
        x = synth.render(a, tools / package / file, SAMPLE_RATE)
        name = f"{a.melody.name}-{i:03d}-{_slug(INSTRUMENT_NAMES[a.program])}"
        clip = RenderedClip(a.category, f"melody:{a.melody.name}", spec.licence, RENDER_RATE)
        for k, (start, stop) in enumerate(pieces(len(x) / SAMPLE_RATE)):
            piece = x[round(start * SAMPLE_RATE) : round(stop * SAMPLE_RATE)]
            writer.add(f"{name}-{k:02d}", piece, clip)


def _recipe(spec: PackageSource | RenderedSource, seed: int) -> str:
    return hashlib.sha1(repr((BUILD_VERSION, seed, spec)).encode()).hexdigest()


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def build_source(
    spec: PackageSource | RenderedSource,
    out: Path,
    tools: Path,
    seed: int,
    fetch: Fetch,
    report: Report,
) -> list[dict[str, str]]:
    """One source's rows; built into out/audio/<source> unless a build with the same recipe
    is already there. A source folder appears whole (renamed into place) or not at all."""
    started = time.monotonic()
    folder = out / "audio" / _slug(spec.source)
    recipe = _recipe(spec, seed)
    stamp = folder / "recipe.txt"
    if stamp.is_file() and stamp.read_text().strip() == recipe:
        report.reused.append(spec.source)
        return _read_rows(folder / "rows.csv")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    writer = _Writer(partial, f"audio/{folder.name}", spec.source, spec.cap_minutes)
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=out) as scratch:
        if isinstance(spec, PackageSource):
            _build_package(spec, writer, Path(scratch), seed, fetch, report)
        else:
            _build_rendered(spec, writer, tools, seed, fetch)
    rows = writer.rows
    _write_rows(partial / "rows.csv", rows)
    (partial / "recipe.txt").write_text(recipe + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    report.built.append(spec.source)
    minutes = sum(float(r["duration_s"]) for r in rows) / 60
    took = time.monotonic() - started
    print(f"{spec.source}: {len(rows)} files, {minutes:.1f} min in {took:.0f} s", file=sys.stderr)
    return rows


def build(
    out: Path,
    tools: Path,
    seed: int = 0,
    sources: tuple[PackageSource | RenderedSource, ...] | None = None,
    fetch: Fetch = debian.fetch,
) -> tuple[list[dict[str, str]], Report]:
    """Build (or reuse) every source and write out/manifest.csv; returns its rows."""
    out.mkdir(parents=True, exist_ok=True)
    report = Report()
    rows: list[dict[str, str]] = []
    for spec in catalogue(seed) if sources is None else sources:
        rows += build_source(spec, out, tools, seed, fetch, report)
    partial = out / f"manifest.{os.getpid()}.tmp"  # one per process: runs may share a cache
    _write_rows(partial, rows)
    partial.replace(out / "manifest.csv")
    return rows, report


def summary(rows: list[dict[str, str]]) -> str:
    """Markdown table: source, category, files, minutes, groups, licence."""
    table: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in rows:
        table.setdefault((r["source"], r["category"]), []).append(r)
    lines = [
        "| source | category | files | minutes | groups | licence |",
        "|---|---|---|---|---|---|",
    ]
    for (source, category), rs in table.items():
        minutes = sum(float(r["duration_s"]) for r in rs) / 60
        groups = len({r["group"] for r in rs})
        licences = "; ".join(sorted({r["license"] for r in rs}))
        lines.append(
            f"| {source} | {category} | {len(rs)} | {minutes:.1f} | {groups} | {licences} |"
        )
    total = sum(float(r["duration_s"]) for r in rows) / 60
    lines.append(f"| **total** | | {len(rows)} | {total:.1f} | | |")
    return "\n".join(lines)


def main(cache: Path = DEFAULT_CACHE, seed: int = 0) -> int:
    """The `transfer` command: build into cache/transfer, print the summary and the time."""
    started = time.monotonic()
    out = cache / "transfer"
    try:
        rows, report = build(out, cache / "transfer-tools", seed)
    except (debian.PackageError, RenderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(rows))
    versions = sorted(
        {line for f in out.glob("audio/*/packages.txt") for line in f.read_text().splitlines()}
    )
    print("packages: " + ", ".join(versions))
    for reason, count in sorted(report.skipped.items()):
        print(f"left out: {count} x {reason}")
    print(
        f"{out / 'manifest.csv'}: {len(rows)} files; built "
        f"{len(report.built)} sources, reused {len(report.reused)}, in "
        f"{time.monotonic() - started:.0f} s"
    )
    return 0

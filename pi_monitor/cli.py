"""The `pi-monitor` command: one subcommand per job, errors as one line and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pi_monitor import __version__
from pi_monitor.audio import AudioFileError, find_audio_files
from pi_monitor.classifier import CryClassifier, ModelError
from pi_monitor.config import DEFAULT_CONFIG, ConfigError, MqttSettings, Settings, load_settings
from pi_monitor.detector import ThresholdError
from pi_monitor.methods import METHODS, AgeGateError, age_gate

if TYPE_CHECKING:
    from pi_monitor.checkin import CheckinCoach
    from pi_monitor.commands import SessionStart
    from pi_monitor.mqtt import MqttPublisher
    from pi_monitor.state import MonitorState

EXIT_OK, EXIT_FAILED, EXIT_PIPE_CLOSED = 0, 2, 1


class OutputError(Exception):
    """Events cannot be written (disk full, /dev/full); the message names where and the fix."""


# What a user can fix (a setting, a file, the model, the output): one line on stderr, exit 2.
USER_ERRORS = (ConfigError, ModelError, AudioFileError, AgeGateError, ThresholdError, OutputError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"pi-monitor: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly; point stdout at /dev/null so the
        # interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pi-monitor", description="Local infant-cry detector for a nursery microphone."
    )
    parser.add_argument("--version", action="version", version=f"pi-monitor {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_replay(sub)
    _add_check_config(sub)
    _add_run(sub)
    _add_devices(sub)
    _add_report(sub)
    _add_setup(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


# --- replay -------------------------------------------------------------------------------


def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="run the pipeline on audio files, print JSON Lines events")
    p.add_argument("paths", nargs="*", metavar="PATH", help="WAV/FLAC files or directories")
    p.add_argument("--config", type=Path, help="TOML config (detector, model, ...)")
    p.add_argument("--model", type=Path, help="ONNX model (overrides model.path)")
    p.add_argument("--scores", action="store_true", help="also print every window's score")
    p.add_argument("--out", type=Path, help="write events to this file instead of stdout")
    p.add_argument(
        "--block-frames",
        type=int,
        metavar="N",
        help="read files N samples at a time (default 160000, 4000 when paced; results do not "
        "depend on it)",
    )
    g = p.add_argument_group("try a Home Assistant automation without a baby")
    g.add_argument(
        "--mqtt",
        action="store_true",
        help="also publish to the broker in --config's [mqtt] section, as a device of its own "
        "('<device_name> (replay)', id <device_id>_replay), in real time unless --speed says",
    )
    g.add_argument(
        "--speed",
        type=float,
        metavar="X",
        help="play X times faster than real time (default with --mqtt: 1, as it would sound "
        "live; 0: as fast as the files can be read, the default without --mqtt)",
    )
    g.add_argument(
        "--remove-device",
        action="store_true",
        help="remove the replay device from Home Assistant (no PATH needed)",
    )
    _add_rehearsal_flags(p)
    p.set_defaults(func=_cmd_replay)


def _cmd_replay(args: argparse.Namespace) -> int:
    from pi_monitor.replay import BLOCK_FRAMES, PACED_BLOCK_FRAMES, RealTime, replay_paths
    from pi_monitor.sinks import Sink

    settings = _settings(args)
    if args.remove_device:
        return _remove_replay_device(settings, args.paths)
    if not args.paths:
        raise ConfigError("give at least one PATH to replay (or --remove-device)")
    speed = (1.0 if args.mqtt else 0.0) if args.speed is None else args.speed
    if not speed >= 0.0:
        raise ConfigError(f"--speed must be 0 or more, got {args.speed}")
    block_frames = args.block_frames
    if block_frames is None:
        block_frames = PACED_BLOCK_FRAMES if speed else BLOCK_FRAMES
    if block_frames < 1:
        raise ConfigError(f"--block-frames must be at least 1, got {args.block_frames}")
    classifier = CryClassifier(args.model or settings.model.path, settings.model.threads)
    if args.out:
        _refuse_input_as_output(args.out, args.paths)
    try:
        out = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    except OSError as e:
        raise ConfigError(f"{args.out}: cannot write output ({e.strerror})") from None
    coach, session = _rehearsal(args, settings)
    output = _JsonLinesOutput(out, str(args.out) if args.out else "standard output", args.scores)
    sinks: list[Sink] = [output]
    mqtt_errors: list[str] = []
    with contextlib.ExitStack() as stack:
        if args.mqtt:
            sinks.append(stack.enter_context(_replay_mqtt(settings, mqtt_errors)))
        try:
            report = replay_paths(
                args.paths,
                classifier,
                settings,
                sinks,
                block_frames=block_frames,
                progress=sys.stderr,
                coach=coach,
                commands=session,
                start=args.start or (_now() if args.mqtt else None),
                pace=(lambda source: RealTime(source, speed)) if speed else None,
            )
            output.flush()
        finally:
            if args.out:
                with contextlib.suppress(OSError):  # a failed write has been reported already
                    out.close()
    for error in report.errors + mqtt_errors:
        print(f"pi-monitor: error: {error}", file=sys.stderr)
    return EXIT_FAILED if report.errors or mqtt_errors else EXIT_OK


def _refuse_input_as_output(out: Path, paths: list[str]) -> None:
    """`--out` must not be one of the recordings: opening it for writing would empty it."""
    if not out.exists():
        return
    for given in paths:
        for path in find_audio_files(given):
            with contextlib.suppress(OSError):  # an unreadable input is reported by the replay
                if path.is_file() and os.path.samefile(path, out):
                    raise ConfigError(
                        f"--out {out} is the input {path}: writing events there would destroy "
                        "the recording; choose another output file"
                    )


class _JsonLinesOutput:
    """The events as JSON Lines (a sink); a failed write (disk full, /dev/full) is one
    `OutputError` line instead of a traceback, while a closed pipe stays `BrokenPipeError` for
    `main`."""

    def __init__(self, out: TextIO, where: str, scores: bool) -> None:
        from pi_monitor.sinks import JsonlSink

        self.out, self.where = out, where
        self._lines = JsonlSink(out, scores)

    def event(self, line: dict[str, Any]) -> None:
        with self._failing_writes_reported():
            self._lines.event(line)

    def state(self, state: MonitorState) -> None:
        """JSON Lines carry events only."""

    def flush(self) -> None:
        with self._failing_writes_reported():
            self.out.flush()

    @contextlib.contextmanager
    def _failing_writes_reported(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as e:
            if self.out is sys.stdout:  # the interpreter's last flush must not fail again
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise OutputError(
                f"{self.where}: cannot write the events ({e.strerror}); free some space or give "
                "another --out"
            ) from None


def _now() -> datetime.datetime:
    return datetime.datetime.now().astimezone()


# --- replay --mqtt ----------------------------------------------------------------------

MQTT_DRAIN_S = 30.0
# Home Assistant creates a newly discovered device's entities, and subscribes to their topics,
# a moment after the discovery messages arrive; events sent before then would never reach the
# event entity, so a replay waits this long after announcing its device.
HA_SUBSCRIBE_S = 3.0


def _replay_device(settings: Settings) -> MqttSettings:
    """The replay's own device, beside the live service's: a replay never shows as the nursery."""
    from pi_monitor.mqtt import client_id

    m = settings.mqtt
    return dataclasses.replace(
        m,
        device_id=f"{m.device_id}_replay",
        device_name=f"{m.device_name} (replay)",
        client_id=f"{client_id(m)}-replay",
    )


@contextlib.contextmanager
def _replay_mqtt(settings: Settings, errors: list[str]) -> Iterator[MqttPublisher]:
    """A publisher of the replay device to the configured broker, with a throw-away outbox; it
    gives HA time to subscribe before the first event, and on exit waits until the broker has
    every event, else adds an error line."""
    from pi_monitor.mqtt import MqttPublisher
    from pi_monitor.tls import mqtt_tls_context

    m = settings.mqtt
    mqtt_tls_context(m)  # bad TLS files: one line now, not a traceback from paho
    with tempfile.TemporaryDirectory(prefix="pi-monitor-replay-") as state_dir:
        publisher = MqttPublisher(_replay_device(settings), Path(state_dir))
        publisher.start()
        try:
            if publisher.wait_connected(MQTT_DRAIN_S):
                time.sleep(HA_SUBSCRIBE_S)
            yield publisher
            delivered = publisher.wait_connected(MQTT_DRAIN_S) and publisher.wait_drained(
                MQTT_DRAIN_S
            )
            left, dropped = len(publisher.outbox), publisher.outbox.dropped
        finally:
            publisher.stop()
        if dropped or not delivered:
            errors.append(
                f"mqtt: {left + dropped} events not delivered to {m.host}:{m.port} within "
                f"{MQTT_DRAIN_S:.0f} s ({left} still queued, {dropped} dropped from the full "
                "queue, mqtt.queue_max_events); check the broker and the [mqtt] section"
            )


def _remove_replay_device(settings: Settings, paths: list[str]) -> int:
    from pi_monitor.mqtt import MqttError, forget_device

    if paths:
        raise ConfigError("--remove-device replays nothing; leave out the PATHs")
    device = _replay_device(settings)
    try:
        forget_device(device, MQTT_DRAIN_S)
    except MqttError as e:
        print(f"pi-monitor: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"removed '{device.device_name}' ({device.device_id}) from Home Assistant")
    return EXIT_OK


# --- check-config -------------------------------------------------------------------------


def _add_check_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate a config file and the model it names")
    p.add_argument("config", type=Path, metavar="FILE")
    p.set_defaults(func=_cmd_check_config)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from pi_monitor.audio import Resampler
    from pi_monitor.detector import DetectorParams
    from pi_monitor.tls import mqtt_tls_context

    settings = _settings(args)
    info = CryClassifier(settings.model.path, settings.model.threads).info
    rate = settings.audio.sample_rate
    try:
        mqtt_tls_context(settings.mqtt)
        if rate:
            Resampler.check(rate, info.features.sample_rate)
    except ConfigError as e:
        raise ConfigError(f"{args.config}: {e}") from None
    except ValueError as e:
        raise ConfigError(f"{args.config}: 'audio.sample_rate' = {rate}: {e}") from None
    params = DetectorParams.for_model(settings.detector, info)
    checkin = settings.checkin
    for warning in age_gate(checkin.method, checkin.birth_date, datetime.date.today()):
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    sure = "none" if params.sure_threshold is None else f"{params.sure_threshold:.2f}"
    print(
        f"{args.config}: OK (model {settings.model.path}, {info.features.sample_rate} Hz, "
        f"on {params.on_threshold:.2f} / off {params.off_threshold:.2f} / sure {sure}, "
        f"confirmation {params.min_bout_s:g} s)"
    )
    return EXIT_OK


# --- run / devices (the service) ----------------------------------------------------------


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the nursery service: live microphone, events to MQTT and logs")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.mqtt.tls:
        from pi_monitor import without_openssl

        without_openssl.keep_out()  # before paho comes in with the service
    from pi_monitor.capture import CaptureError
    from pi_monitor.service import run_service

    try:
        return run_service(settings)
    except CaptureError as e:
        print(f"pi-monitor: error: {e}", file=sys.stderr)
        return EXIT_FAILED


def _add_devices(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list audio input devices (for audio.device)")
    p.set_defaults(func=_cmd_devices)


def _cmd_devices(args: argparse.Namespace) -> int:
    from pi_monitor.capture import CaptureError, SoundDeviceBackend, format_devices

    try:
        print(format_devices(SoundDeviceBackend().input_devices()))
    except CaptureError as e:
        print(f"pi-monitor: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# --- sleep-training check-ins: rehearse a night in a replay, report the nights ----------


def _add_rehearsal_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rehearse a sleep-training night (the check-in coach)")
    g.add_argument(
        "--method",
        choices=METHODS,
        help="run the check-in coach with this method (default checkin.method when --night)",
    )
    g.add_argument(
        "--night", type=int, metavar="N", help="night N of the plan (default 1 with --method)"
    )
    g.add_argument(
        "--start",
        type=_start_time,
        metavar="HH:MM|ISO",
        help="wall-clock time of the file's start: adds `wall` to every event",
    )


def _start_time(text: str) -> datetime.datetime:
    """`19:30` (today, local time) or a full ISO-8601 date and time."""
    try:
        clock = datetime.time.fromisoformat(text)
        moment = datetime.datetime.combine(datetime.date.today(), clock)
    except ValueError:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a time; give HH:MM or an ISO-8601 date and time"
            ) from None
    if not datetime.MINYEAR < moment.year < datetime.MAXYEAR:  # room for the audio after it
        raise argparse.ArgumentTypeError(
            f"{text!r} is out of range; give a time between the years "
            f"{datetime.MINYEAR + 1} and {datetime.MAXYEAR - 1}"
        )
    return moment if moment.tzinfo else moment.astimezone()


def _rehearsal(
    args: argparse.Namespace, settings: Settings
) -> tuple[Callable[[], CheckinCoach] | None, list[SessionStart]]:
    """A fresh coach per file and the session it starts at the file's start, or neither
    without --method/--night."""
    from pi_monitor.checkin import CheckinCoach
    from pi_monitor.commands import SessionStart

    if args.method is None and args.night is None:
        return None, []
    night = 1 if args.night is None else args.night
    if night < 1:
        raise ConfigError(f"--night must be 1 or more, got {night}")
    checkin = dataclasses.replace(settings.checkin, method=args.method or settings.checkin.method)
    day = (args.start or datetime.datetime.now().astimezone()).date()
    CheckinCoach(checkin, day)  # the age gate, once, before any audio is read
    return lambda: CheckinCoach(checkin, day), [SessionStart(t=0.0, night=night, date=day)]


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="sleep-training nights from the night log: table and plot")
    p.add_argument("--nights", type=int, metavar="N", help="only the last N nights")
    p.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="also plot crying minutes, wakings and time to settle (needs pi-monitor[report])",
    )
    p.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="night log folder (default service.state_dir)"
    )
    p.add_argument("--config", type=Path, help="TOML config (for service.state_dir)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from pi_monitor.report import ReportError, run_report

    state_dir = args.state_dir or _settings(args).service.state_dir
    try:
        run_report(state_dir, args.nights, args.plot, sys.stdout)
    except ReportError as e:
        print(f"pi-monitor: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# --- setup: install the service on a Raspberry Pi --------------------------------------------


def _add_setup(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup",
        help="install the service on this Pi (run with sudo): user, config, systemd unit",
        description="Do docs/INSTALL.md's steps: the system user in group audio, "
        "/etc/pi-monitor/config.toml from the template (never over an existing one), the state "
        "directory, the systemd unit enabled and started, and a first check-config. Run it again "
        "at any time: it changes only what is missing or outdated.",
    )
    p.add_argument("--dry-run", action="store_true", help="print every step, change nothing")
    p.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="set up the system tree under DIR instead of / (a test, an SD-card image): the "
        "user and the unit are made there, the running system is left alone",
    )
    p.add_argument(
        "--executable",
        type=Path,
        metavar="PATH",
        help="the pi-monitor the service runs (default: this one, links resolved)",
    )
    p.set_defaults(func=_cmd_setup)


def _cmd_setup(args: argparse.Namespace) -> int:
    from pi_monitor.install import SetupError, Target, installed_executable, run_setup

    executable = args.executable.absolute() if args.executable else installed_executable()
    target = Target((args.root or Path("/")).resolve(), executable)
    try:
        run_setup(target, args.dry_run, sys.stdout)
    except SetupError as e:
        sys.stdout.flush()
        print(f"pi-monitor: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK

"""The `pi-monitor` command: one subcommand per job, errors as one line and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pi_monitor import __version__
from pi_monitor.audio import AudioFileError
from pi_monitor.classifier import CryClassifier, ModelError
from pi_monitor.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from pi_monitor.replay import EventSink

EXIT_OK, EXIT_FAILED = 0, 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, ModelError, AudioFileError) as e:
        print(f"pi-monitor: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


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
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


# --- replay -------------------------------------------------------------------------------


def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="run the pipeline on audio files, print JSON Lines events")
    p.add_argument("paths", nargs="+", metavar="PATH", help="WAV/FLAC files or directories")
    p.add_argument("--config", type=Path, help="TOML config (detector, model, ...)")
    p.add_argument("--model", type=Path, help="ONNX model (overrides model.path)")
    p.add_argument("--scores", action="store_true", help="also print every window's score")
    p.add_argument("--out", type=Path, help="write events to this file instead of stdout")
    p.add_argument(
        "--block-frames",
        type=int,
        default=16000,
        metavar="N",
        help="read files N samples at a time (results do not depend on it)",
    )
    p.add_argument(
        "--mqtt",
        action="store_true",
        help="also publish the events to the broker in --config's [mqtt] section, as that "
        "mqtt.device_id (use another device_id while the live service runs)",
    )
    p.set_defaults(func=_cmd_replay)


def _cmd_replay(args: argparse.Namespace) -> int:
    from pi_monitor.replay import jsonl_sink, replay_paths

    settings = _settings(args)
    if args.block_frames < 1:
        raise ConfigError(f"--block-frames must be at least 1, got {args.block_frames}")
    classifier = CryClassifier(args.model or settings.model.path, settings.model.threads)
    try:
        out = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    except OSError as e:
        raise ConfigError(f"{args.out}: cannot write output ({e.strerror})") from None
    sinks = [jsonl_sink(out)]
    mqtt_errors: list[str] = []
    with contextlib.ExitStack() as stack:
        if args.mqtt:
            sinks.append(stack.enter_context(_replay_mqtt(settings, mqtt_errors)))
        try:
            report = replay_paths(
                args.paths,
                classifier,
                settings.detector,
                sinks,
                scores=args.scores,
                block_frames=args.block_frames,
                progress=sys.stderr,
            )
        finally:
            if args.out:
                out.close()
    for error in report.errors + mqtt_errors:
        print(f"pi-monitor: error: {error}", file=sys.stderr)
    return EXIT_FAILED if report.errors or mqtt_errors else EXIT_OK


# --- replay --mqtt ----------------------------------------------------------------------

MQTT_DRAIN_S = 30.0


@contextlib.contextmanager
def _replay_mqtt(settings: Settings, errors: list[str]) -> Iterator[EventSink]:
    """A sink publishing to the configured broker, with its own client id and a throw-away
    outbox; on exit waits until the broker has every event, else adds an error line."""
    from pi_monitor.mqtt import MqttPublisher, client_id, mqtt_sink
    from pi_monitor.state import MonitorState

    m = settings.mqtt
    replay_settings = dataclasses.replace(m, client_id=client_id(m) + "-replay")
    with tempfile.TemporaryDirectory(prefix="pi-monitor-replay-") as state_dir:
        publisher = MqttPublisher(replay_settings, Path(state_dir))
        publisher.start()
        try:
            yield mqtt_sink(publisher, MonitorState(method=settings.checkin.method))
            delivered = publisher.wait_connected(MQTT_DRAIN_S) and publisher.wait_drained(
                MQTT_DRAIN_S
            )
            left = len(publisher.outbox)
        finally:
            publisher.stop()
        if not delivered:
            errors.append(
                f"mqtt: {left} events not delivered to {m.host}:{m.port} within "
                f"{MQTT_DRAIN_S:.0f} s; check the broker and the [mqtt] section"
            )


# --- check-config -------------------------------------------------------------------------


def _add_check_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate a config file and the model it names")
    p.add_argument("config", type=Path, metavar="FILE")
    p.set_defaults(func=_cmd_check_config)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from pi_monitor.detector import DetectorParams

    settings = _settings(args)
    info = CryClassifier(settings.model.path, settings.model.threads).info
    params = DetectorParams.resolve(settings.detector, info.threshold, info.off_threshold)
    print(
        f"{args.config}: OK (model {settings.model.path}, {info.features.sample_rate} Hz, "
        f"on {params.on_threshold:.2f} / off {params.off_threshold:.2f})"
    )
    return EXIT_OK


# --- run / devices (the service) ----------------------------------------------------------

DEFAULT_CONFIG = Path("/etc/pi-monitor/config.toml")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the nursery service: live microphone, events to MQTT and logs")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from pi_monitor.capture import CaptureError
    from pi_monitor.service import run_service

    try:
        return run_service(_settings(args))
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

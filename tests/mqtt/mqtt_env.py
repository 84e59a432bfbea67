"""mqtt_env.py -- what the standard-client MQTT tests (tests/mqtt/test_*.py)
share: a parley server with --mqtt-listen on free loopback ports (started
and stopped by its PID on every path), parley-cli devices (registered over
WebSocket, then used over MQTT with `parley-cli mqtt-password`), the
protobuf Frame module generated from proto/parley.proto with protoc at test
time, and PASS/FAIL lines with a closing CASES line like tests/check.h.

Environment: PARLEY_BIN (the server), PARLEY_CLI (parley-cli). Debian's
python3 (/usr/bin/python3) runs these: python3-paho-mqtt, python3-protobuf,
python3-nacl and protoc come from scripts/install-deps.sh.
"""
import atexit
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WAIT_S = 30          # bound on every wait; a liveness bound, never a timing assertion
CLI_TIMEOUT_S = 60   # bound on one parley-cli run

_passed = 0
_failed = 0


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def run_case(fn):
    """Runs one case: PASS name, or FAIL name with why on stderr."""
    global _passed, _failed
    try:
        fn()
    except CheckFailed as e:
        print("  %s: %s" % (fn.__name__, e), file=sys.stderr)
        _failed += 1
        print("FAIL %s" % fn.__name__, flush=True)
        return
    except Exception:  # a crash in a case fails that case, not the program
        traceback.print_exc()
        _failed += 1
        print("FAIL %s" % fn.__name__, flush=True)
        return
    _passed += 1
    print("PASS %s" % fn.__name__, flush=True)


def exit_with_cases():
    print("CASES %d passed %d failed" % (_passed, _failed), flush=True)
    sys.exit(1 if _failed or _passed == 0 else 0)


def setup_failed(why, server=None):
    """The program could not set up its cases: one FAIL, the CASES line, exit 1."""
    global _failed
    print("  setup: %s" % why, file=sys.stderr)
    if server is not None:
        print(server.log_tail(), file=sys.stderr)
        server.stop()
    _failed += 1
    print("FAIL setup", flush=True)
    exit_with_cases()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=WAIT_S, step=0.02):
    """pred() true within timeout: True; else False. Bounded."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


# ------------------------------------------------------------ protobuf

_pb = None


def pb():
    """The parley_pb2 module, generated from proto/parley.proto into a temp dir."""
    global _pb
    if _pb is None:
        out = tempfile.mkdtemp(prefix="parley-mqtt-pb-")
        atexit.register(shutil.rmtree, out, True)
        subprocess.run(["protoc", "--proto_path=" + os.path.join(ROOT, "proto"), "--python_out=" + out,
                        os.path.join(ROOT, "proto", "parley.proto")], check=True)
        sys.path.insert(0, out)
        _pb = importlib.import_module("parley_pb2")
    return _pb


def send_frame(conv, text, request_id=1, client_msg_id=None):
    """A Frame{send_message} of a TEXT, serialized, as a device publishes it to T/req."""
    m = pb()
    f = m.Frame(request_id=request_id)
    f.send_message.conversation_id = conv
    f.send_message.client_msg_id = (client_msg_id or ("py-%d-%d" % (os.getpid(), request_id))).encode()
    f.send_message.type = m.TEXT
    f.send_message.body = text.encode()
    return f.SerializeToString()


def parse_frame(payload):
    f = pb().Frame()
    f.ParseFromString(payload)
    return f


# ------------------------------------------------------------ the server

class Server:
    """parley serve with --listen and --mqtt-listen on free loopback ports."""

    def __init__(self, extra=()):
        self.bin = os.environ.get("PARLEY_BIN", os.path.join(ROOT, "build", "parley"))
        self.cli_bin = os.environ.get("PARLEY_CLI", os.path.join(os.path.dirname(self.bin), "parley-cli"))
        self.dir = tempfile.mkdtemp(prefix="parley-mqtt-test-")
        self.port = free_port()
        self.mqtt_port = free_port()
        self.url = "ws://127.0.0.1:%d" % self.port
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--listen", "127.0.0.1:%d" % self.port, "--mqtt-listen",
             "127.0.0.1:%d" % self.mqtt_port, "--data", os.path.join(self.dir, "data"),
             "--drain-window", "100", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        if not wait_until(self._healthy, step=0.05):
            self.stop()
            raise RuntimeError("server did not become healthy:\n" + self.log_tail())

    def _healthy(self):
        if self.proc.poll() is not None:
            return True   # exited: stop waiting, the caller sees it
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % self.port, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def metric(self, name):
        """The sum of every sample of name in /metrics (0 when absent)."""
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_tail(self, n=30):
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        """SIGTERM by PID, a bounded wait, then SIGKILL; removes the temp dir."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None
        if self.dir:
            shutil.rmtree(self.dir, True)
            self.dir = None


class Device:
    """A parley-cli device (its --state directory) registered over WebSocket."""

    def __init__(self, server, name):
        self.server = server
        self.name = name
        self.state = os.path.join(server.dir, "cli-" + name)
        self.user_id = int(self.cli("register", name).strip())
        ident = {}
        with open(os.path.join(self.state, "identity")) as f:
            for line in f:
                if line.startswith("#") or " " not in line:
                    continue
                k, v = line.rstrip("\n").split(" ", 1)
                ident[k] = v
        self.device_id = int(ident["device_id"])
        self.secret_key = bytes.fromhex(ident["secret_key"])   # libsodium's: seed || public key
        self.client_id = "%d.%d" % (self.user_id, self.device_id)
        self.topic = "p/" + self.client_id

    def cli(self, *args, check_rc=True):
        r = subprocess.run([self.server.cli_bin, "--state", self.state, "--server", self.server.url, *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CLI_TIMEOUT_S)
        if check_rc and r.returncode != 0:
            raise CheckFailed("parley-cli %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.decode()))
        return r.stdout.decode()

    def mqtt_password(self):
        """(client id, password) from `parley-cli mqtt-password`; a fresh TS each call."""
        out = self.cli("mqtt-password").split("\n")
        check(out[0] == self.client_id, "mqtt-password printed client id %r, expected %r" % (out[0], self.client_id))
        return out[0], out[1]

    def direct(self, other):
        """The direct conversation with other, accepted by other."""
        conv = int(self.cli("direct", other.name).strip())
        other.cli("accept", str(conv))
        return conv

    def send(self, conv, text):
        return int(self.cli("send", "--plaintext", str(conv), text).strip())

    def sync_texts(self, wait_s=0):
        """The message bodies `sync --plaintext` prints (new since the last sync)."""
        import json
        texts = []
        for line in self.cli("sync", "--plaintext", "--wait", str(wait_s)).splitlines():
            d = json.loads(line)
            if d.get("text") is not None:
                texts.append(d["text"])
        return texts


def start_with_devices(*names):
    """The set-up of a program's cases: a Server, a Device per name (in that
    order), and the direct conversation of the first two, accepted by the
    second, with the first's sync caught up past its creation. Returns
    (server, [devices], conv); on any failure, setup_failed (exits)."""
    server = None
    try:
        server = Server()
        devices = [Device(server, n) for n in names]
        conv = devices[0].direct(devices[1])
        devices[0].sync_texts()
    except Exception as e:
        setup_failed(e, server)
    return server, devices, conv

"""A device as a real MQTT client (paho-mqtt) over mutual TLS to the emulator's IoT endpoint."""

import ssl
import threading
import time

import paho.mqtt.client as mqtt

WAIT_SECONDS = 3.0


class Session:
    """One MQTT connection. `connected` is False when the broker dropped or refused it."""

    def __init__(self, device, folder, broker_ca: str, port: int):
        self.device = device
        chain, key = device.write(folder)
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device.name, clean_session=True)
        # The broker certificate names the emulator's host, not 127.0.0.1: skip the name check only.
        self._client.tls_set(ca_certs=broker_ca, certfile=chain, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
        self._client.tls_insecure_set(True)
        self._port = port
        self._settled = threading.Event()
        self._closed = threading.Event()
        self._acks: dict[int, threading.Event] = {}
        self._messages: list[tuple[str, bytes]] = []
        self._received = threading.Event()
        self.connected = False
        self.detail = ""
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_ack
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def _on_connect(self, _client, _userdata, _flags, reason, _properties):
        self.connected = not reason.is_failure
        self.detail = f"CONNACK {reason}"
        self._settled.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason, _properties):
        self.connected = False
        self.detail = self.detail or f"closed by the broker ({reason})"
        self._closed.set()
        self._settled.set()

    def _on_ack(self, _client, _userdata, mid, _reason, _properties):
        self._acks.setdefault(mid, threading.Event()).set()

    def _on_subscribe(self, _client, _userdata, mid, _reasons, _properties):
        self._acks.setdefault(mid, threading.Event()).set()

    def _on_message(self, _client, _userdata, message):
        self._messages.append((message.topic, message.payload))
        self._received.set()

    def open(self) -> bool:
        try:
            self._client.connect("127.0.0.1", self._port, keepalive=30)
        except (OSError, ssl.SSLError) as error:
            self.detail = f"refused during the TLS handshake ({type(error).__name__})"
            return False
        self._client.loop_start()
        self._settled.wait(WAIT_SECONDS)
        if not self._settled.is_set():
            self.detail = "no CONNACK"
        return self.connected

    def _acknowledged(self, mid: int) -> bool:
        event = self._acks.setdefault(mid, threading.Event())
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and not self._closed.is_set():
            if event.wait(0.05):
                return True
        return event.is_set()

    def subscribe(self, topic: str) -> bool:
        _result, mid = self._client.subscribe(topic, qos=1)
        return self._acknowledged(mid)

    def publish(self, topic: str, payload: bytes) -> bool:
        """True when the broker acknowledged the QoS 1 publish (PUBACK)."""
        info = self._client.publish(topic, payload, qos=1)
        return self._acknowledged(info.mid)

    def received(self, topic: str) -> bool:
        self._received.wait(WAIT_SECONDS)
        return any(t == topic for t, _ in self._messages)

    @property
    def closed_by_broker(self) -> bool:
        return self._closed.wait(WAIT_SECONDS)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

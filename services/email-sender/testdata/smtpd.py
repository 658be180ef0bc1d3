"""An SMTP server for the email sender's tests, on aiosmtpd.

It listens on 127.0.0.1 on a port of the system's choosing, and writes
one JSON object a line to stdout: first {"event": "listening", "port": N},
then one per connection and disconnection, AUTH attempt, MAIL, RCPT and
accepted message (with its raw bytes, base64). It reads commands from stdin, one JSON
object a line, each acknowledged on stdout: {"rules": [...]} replaces the
reply rules, {"kick": "abort"} drops every open connection and
{"kick": "421"} says 421 and closes them.

argv[1] is the configuration, a JSON object:
  cert, key          PEM files of the server's certificate and key
  starttls           offer STARTTLS (needs cert and key)
  implicit           TLS from the first byte (needs cert and key)
  require_starttls   refuse commands other than EHLO, NOOP, QUIT before it
  auth               {"user": ..., "password": ...}: the one login accepted
  auth_require_tls   offer AUTH only over TLS (default true)
  auth_exclude       mechanisms not to offer, such as ["PLAIN"]
  rules              reply rules: {"cmd": "MAIL"|"RCPT"|"DATA"|"RSET",
                     "addr": only this address (MAIL, RCPT), "reply": the
                     reply instead of accepting, "drop": close the
                     connection instead of replying, "delay": seconds
                     to wait first, "times": how many times it applies
                     (0: always)}. A DATA rule applies once the
                     message's content has arrived.
"""

import asyncio
import base64
import json
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

config = json.loads(sys.argv[1])
rules = list(config.get("rules") or [])
connections = set()
queued = 0


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def secure(server, session):
    return session.ssl is not None or (
        server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
    )


def match(cmd, addr=None):
    """Returns the first live rule for cmd and addr, counting its use."""
    for rule in rules:
        if rule["cmd"] != cmd or rule.get("addr") not in (None, addr):
            continue
        times = rule.get("times", 0)
        if times:
            used = rule.get("used", 0)
            if used >= times:
                continue
            rule["used"] = used + 1
        return rule
    return None


async def apply(server, rule):
    """Returns the reply a rule gives; a dropped connection never sees it."""
    if rule.get("delay"):
        await asyncio.sleep(rule["delay"])
    if rule.get("drop"):
        server.transport.abort()
        return "421 4.4.2 dropped"
    return rule["reply"]


class Recorder:
    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        emit(event="mail", mail_from=address, tls=secure(server, session))
        rule = match("MAIL", address)
        if rule:
            return await apply(server, rule)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        emit(event="rcpt", address=address)
        rule = match("RCPT", address)
        if rule:
            return await apply(server, rule)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_RSET(self, server, session, envelope):
        rule = match("RSET")
        if rule:
            return await apply(server, rule)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        global queued
        rule = match("DATA")
        if rule:
            return await apply(server, rule)
        queued += 1
        emit(
            event="message",
            mail_from=envelope.mail_from,
            rcpt_tos=envelope.rcpt_tos,
            data=base64.b64encode(envelope.original_content).decode(),
            tls=secure(server, session),
            login=session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
        )
        return f"250 2.0.0 OK: queued as {queued}"


def authenticator(server, session, envelope, mechanism, auth_data):
    want = config.get("auth") or {}
    login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None
    ok = login is not None and login == want.get("user") and auth_data.password.decode() == want.get("password")
    emit(event="auth", mechanism=mechanism, login=login, success=ok, tls=secure(server, session))
    return AuthResult(success=ok, auth_data=auth_data)


class RecordingSMTP(SMTP):
    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            connections.add(self)
            emit(event="connect")

    def connection_lost(self, error):
        if self in connections:
            connections.discard(self)
            emit(event="disconnect")
        super().connection_lost(error)


async def commands():
    global rules
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if "rules" in cmd:
            rules = list(cmd["rules"])
            emit(event="rules")
        if "kick" in cmd:
            kicked = list(connections)
            for server in kicked:
                if server.transport is None:
                    continue
                if cmd["kick"] == "421":
                    server.transport.write(b"421 4.4.2 closing the idle connection\r\n")
                    server.transport.close()
                else:
                    server.transport.abort()
            emit(event="kicked", n=len(kicked))
    asyncio.get_running_loop().stop()


def main():
    tls = None
    if config.get("cert"):
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(config["cert"], config["key"])
    kwargs = dict(
        hostname="smtp.test",
        authenticator=authenticator,
        # aiosmtpd knows only STARTTLS as TLS; with TLS from the first byte
        # every command is encrypted anyway.
        auth_require_tls=config.get("auth_require_tls", True) and not config.get("implicit"),
        auth_exclude_mechanism=config.get("auth_exclude") or [],
    )
    if config.get("starttls"):
        kwargs.update(tls_context=tls, require_starttls=config.get("require_starttls", False))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: RecordingSMTP(Recorder(), loop=loop, **kwargs),
            host="127.0.0.1",
            port=0,
            ssl=tls if config.get("implicit") else None,
        )
    )
    emit(event="listening", port=server.sockets[0].getsockname()[1])
    # The loop keeps only a weak reference to a task: hold this one.
    reader = loop.create_task(commands())
    try:
        loop.run_forever()
    finally:
        reader.cancel()
        server.close()


if __name__ == "__main__":
    main()
